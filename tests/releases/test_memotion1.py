"""Memotion 1.0 (SemEval-2020 Task 8): labels.csv (or the data_6512.csv variant) + images/, and
2000_testdata.csv joined with Meme_groundTruth.csv's coded labels; ids key on the full image name.

The adapter is stages/releases/memotion1.py; its docstring is the spec these tests check."""
from __future__ import annotations

import csv
from pathlib import Path

from stages.records import make_id
from stages.releases.memotion1 import decode_gold
from tests.releases import examples, split_items, write


def test_memotion1_data_6512_real(real_dataset):
    path = real_dataset("memotion1") / "variant_data_6512" / "data_6512.csv"
    items = examples("memotion1", path.parent)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(items) == len(rows) == 300
    assert path.read_bytes().count(b"\r\n") == 301  # CRLF records
    for e, row in zip(items, rows):
        assert e.manifest.id == make_id("memotion1", "train", row["Image_name"])
        assert e.manifest.labels_raw == {"humour": row["Humour"], "sarcasm": row["Sarcasm"],
                                         "offensive": row["Offensive"], "motivational": row["Motivational"],
                                         "overall_sentiment": row["Overall_Sentiment"]}
        text = row["Corrected_text"] if row["Corrected_text"].strip() else row["OCR_extracted_text"]
        assert (e.ocr.lines[0].text if e.ocr else None) == (text if text.strip() else None)
        assert e.manifest.image_path.endswith("/" + row["Image_name"])
    assert {Path(e.manifest.image_path).suffix for e in items} >= {".jpg", ".png", ".jpeg", ".JPG", ".PNG"}


def make_memotion1_official(root: Path) -> Path:
    write(root / "memotion_dataset_7k" / "labels.csv",
          ",image_name,text_ocr,text_corrected,humour,sarcasm,offensive,motivational,overall_sentiment\n"
          "0,image_1.jpg,LOOK THERE MY FRIEND,LOOK THERE MY FRIEND,"
          "hilarious,general,not_offensive,not_motivational,very_positive\n"
          '1,image_2.jpeg,"two<LF>lines ocr","first line<LF>second, line",'
          "not_funny,general,not_offensive,motivational,very_positive\n"
          "2,image_3.JPG,only ocr,,very_funny,not_sarcastic,not_offensive,not_motivational,positive\n"
          "3,image_4.png,x,x,funny,general,slight,not_motivational,positivechandler_Friday-Mood-AF.-meme-Friends-ChandlerBing.jpg\n"
          "4,image_5.bmp,,,funny,general,slight,motivational,neutral\n", newline="\r\n")
    write(root / "test_data" / "2000_testdata.csv", "Image_name,Image_URL,OCR_extracted_text,corrected_text\n"
          "t_1.jpg,http://u/1,OCR ONE,CORRECTED ONE\nt_2.png,http://u/2,OCR TWO,\nt_3.jpg,http://u/3,NO GOLD,\n"
          "t_4.jpg,http://u/4,BAD CODE,\n")
    write(root / "test_data" / "Meme_groundTruth .csv", "Image_name,Labels\nt_1.jpg,1_1101_2301\n"
          "t_2.png,-1_0000_0000\nt_4.jpg,2_1_1\n")
    return root


def test_memotion1_official_synthetic(tmp_path):
    root = make_memotion1_official(tmp_path / "memotion1")
    items, skips = split_items("memotion1", root)
    ids = [e.manifest.id for e in items]
    train_names = ("image_1.jpg", "image_2.jpeg", "image_3.JPG", "image_5.bmp")
    assert ids == [make_id("memotion1", "train", n) for n in train_names] \
        + [make_id("memotion1", "test", n) for n in ("t_1.jpg", "t_2.png")]
    assert all("." not in i for i in ids)
    one, two, three, five, t1, t2 = items
    assert two.ocr.lines[0].text == "first line\nsecond, line"  # quoted newline kept, CRLF records
    assert three.ocr.lines[0].text == "only ocr"  # text_corrected empty -> text_ocr
    assert five.ocr is None
    assert one.manifest.image_path == str(root / "memotion_dataset_7k" / "images" / "image_1.jpg")
    assert one.manifest.labels_raw == {"humour": "hilarious", "sarcasm": "general", "offensive": "not_offensive",
                                       "motivational": "not_motivational", "overall_sentiment": "very_positive"}
    assert t1.manifest.labels_raw == {"humour": "very_funny", "sarcasm": "very_twisted", "offensive": "not_offensive",
                                      "motivational": "motivational", "overall_sentiment": "positive"}
    assert t1.ocr.lines[0].text == "CORRECTED ONE" and t2.ocr.lines[0].text == "OCR TWO"
    assert t2.manifest.labels_raw["overall_sentiment"] == "negative"
    assert t1.manifest.image_path == str(root / "test_data" / "2000_data" / "t_1.jpg")
    reasons = [(Path(s.file).name, s.line, s.reason) for s in skips]
    # line numbers are physical lines: image_2's record spans lines 3-5
    assert reasons == [("labels.csv", 7, "label value outside the documented set"),  # corrupted sentiment
                       ("2000_testdata.csv", 4, "test id without a gold label"),
                       ("Meme_groundTruth .csv", 4, "label value outside the documented set")]
    assert "positivechandler" in skips[0].detail


def test_memotion1_gold_decoding():
    assert decode_gold("0_0000_0000") == {"humour": "not_funny", "sarcasm": "not_sarcastic",
                                          "offensive": "not_offensive", "motivational": "not_motivational",
                                          "overall_sentiment": "neutral"}
    assert decode_gold("1_1111_3331")["offensive"] == "hateful_offensive"
    assert decode_gold("1_1111_3332") is None and decode_gold("") is None

