"""Memotion 2.0 (DE-FACTIFY @ AAAI-22): memotion_train.csv / memotion_val.csv + <split>_images/;
its column is `sarcastic`, with values unlike Memotion 1's `sarcasm`.

The adapter is stages/releases/memotion2.py; its docstring is the spec these tests check."""
from __future__ import annotations

from pathlib import Path

from tests.releases import split_items, write


def test_memotion2_synthetic(tmp_path):
    root = tmp_path / "memotion2"
    header = "Id,Image url,ocr_text,humour,sarcastic,offensive,motivational,overall_sentiment,classification_based_on\n"
    write(root / "memotion_train.csv", header
          + '1,http://i/1.jpg,"WHEN YOU ""FINALLY""\nGET IT",'
          "funny,little_sarcastic,slight,not_motivational,positive,image\n"
          + "2,http://i/2.jpg,,not_funny,not_sarcastic,not_offensive,motivational,neutral,text\n"
          + "3,http://i/3.jpg,TXT,funny,general,slight,not_motivational,positive,text\n", newline="\r\n")
    write(root / "memotion_val.csv", header + "7001,http://i/7001.jpg,HI,hilarious,very_sarcastic,"
          "hateful_offensive,motivational,very_negative,both\n7002,http://i/7002.jpg,SHORT\n")
    items, skips = split_items("memotion2", root)
    assert [e.manifest.id for e in items] == ["memotion2_train_1", "memotion2_train_2", "memotion2_val_7001"]
    assert items[0].manifest.labels_raw == {"humour": "funny", "sarcastic": "little_sarcastic", "offensive": "slight",
                                            "motivational": "not_motivational", "overall_sentiment": "positive"}
    assert items[0].ocr.lines[0].text == 'WHEN YOU "FINALLY"\r\nGET IT'
    assert items[1].ocr is None and items[0].manifest.text_raw is None
    assert items[2].manifest.image_path == str(root / "val_images" / "7001.jpg")
    # Memotion 1's sarcasm value "general" is not a Memotion 2 value; a short row is counted too
    assert [(Path(s.file).name, s.line, s.reason) for s in skips] == [
        ("memotion_train.csv", 5, "label value outside the documented set"),
        ("memotion_val.csv", 3, "row with missing columns")]

