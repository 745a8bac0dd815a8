"""Native-release adapters on every real sample file and on small synthetic releases."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from stages.records import make_id
from stages.releases import SPECS, Example, ReleaseError, Skip, read_release
from stages.releases.memotion1 import decode_gold
from tests.conftest import REPO_ROOT


def examples(name: str, folder: Path) -> list[Example]:
    items = list(read_release(name, folder))
    skips = [item for item in items if isinstance(item, Skip)]
    assert not skips, skips[:3]
    return items


def split_items(name: str, folder: Path) -> tuple[list[Example], list[Skip]]:
    items = list(read_release(name, folder))
    return [i for i in items if isinstance(i, Example)], [i for i in items if isinstance(i, Skip)]


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace("\n", newline).replace("<LF>", "\n"))  # <LF>: a bare LF inside a quoted field
    return path


def test_registry_covers_every_dataset():
    from stages.releases import DATASETS
    # every module of the package is registered (found, not listed); the original seven keep their order
    modules = sorted(p.stem for p in (REPO_ROOT / "stages" / "releases").glob("*.py") if p.stem != "__init__")
    assert sorted(SPECS) == sorted(DATASETS) == modules
    assert DATASETS == ("hateful_memes", "mami", "mmhs150k", "memotion1", "memotion2", "hatexplain", "olid",
                        "hatecheck")
    with pytest.raises(ValueError, match="valid names: hateful_memes"):
        read_release("nope", Path("."))


# ---------------------------------------------------------------- real samples


def test_hateful_memes_real(real_dataset):
    folder = real_dataset("hateful_memes")
    items = examples("hateful_memes", folder)
    by_split = Counter(e.manifest.split for e in items)
    assert by_split == {"train": 8500, "dev_seen": 500, "dev_unseen": 540, "test_unseen": 2000}
    assert [e.manifest.split for e in items] == sorted((e.manifest.split for e in items),
                                                        key=["train", "dev_seen", "dev_unseen", "test_unseen"].index)
    by_id = {e.manifest.id: e for e in items}
    assert len(by_id) == len(items)
    for split in by_split:
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        for row in rows:
            e = by_id[make_id("hateful_memes", split, row["img"][4:9])]
            assert e.manifest.labels_raw == ({"label": row["label"]} if split != "test_unseen" else None)
            assert e.manifest.text_raw is None and e.manifest.image_path == str(folder / row["img"])
            assert e.ocr.lines[0].text == row["text"] and e.ocr.source == "dataset_transcription"
            assert e.ocr.id == e.manifest.id and e.ocr.lines[0].conf is None
    # the leading zero lost by the integer id is kept (key on img)
    assert "hateful_memes_dev_seen_08291" in by_id and "hateful_memes_dev_seen_8291" not in by_id
    assert Counter(e.manifest.labels_raw["label"] for e in items if e.manifest.split == "train") == {0: 5481, 1: 3019}


def test_mami_truth_real(real_dataset):
    folder = real_dataset("mami")
    items = examples("mami", folder)
    rows = list(csv.reader(open(folder / "truth.txt", newline=""), delimiter="\t"))
    assert len(items) == 300 == len(rows) - 1
    for e, row in zip(items, rows[1:]):
        assert e.manifest.id == make_id("mami", "test", row[0].removesuffix(".jpg"))
        assert e.manifest.labels_raw == dict(zip(rows[0][1:], row[1:]))
        assert all(isinstance(v, str) for v in e.manifest.labels_raw.values())
        assert e.ocr is None and e.manifest.image_path.endswith(row[0])


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


def test_hatexplain_real(real_dataset):
    folder = real_dataset("hatexplain")
    items = examples("hatexplain", folder)
    posts = json.loads((folder / "dataset.json").read_text())
    divisions = json.loads((folder / "post_id_divisions.json").read_text())
    split_of = {post_id: split for split, ids in divisions.items() for post_id in ids}
    assert len(items) == 7 and [e.manifest.id.split("_", 2)[2] for e in items] == list(posts)
    for e, (post_id, post) in zip(items, posts.items()):
        assert e.manifest.split == split_of[post_id]
        assert e.manifest.id == make_id("hatexplain", split_of[post_id], post_id)
        assert e.manifest.labels_raw == {"annotators": post["annotators"], "rationales": post["rationales"]}
        assert e.manifest.text_raw == " ".join(post["post_tokens"]) and e.manifest.image_path is None
    assert Counter(e.manifest.split for e in items) == {"train": 5, "val": 1, "test": 1}
    assert any(isinstance(a["annotator_id"], int) and a["target"] == ["None"]
               for e in items for a in e.manifest.labels_raw["annotators"])


def test_olid_real(real_dataset):
    folder = real_dataset("olid")
    items = examples("olid", folder)
    train = [e for e in items if e.manifest.split == "train"]
    test = [e for e in items if e.manifest.split == "test"]
    assert len(train) == 13240 and len(test) == 860 and items == train + test
    combos = Counter(tuple(e.manifest.labels_raw.values()) for e in train)
    assert combos == {("NOT", "NULL", "NULL"): 8840, ("OFF", "UNT", "NULL"): 524, ("OFF", "TIN", "IND"): 2407,
                      ("OFF", "TIN", "GRP"): 1074, ("OFF", "TIN", "OTH"): 395}
    # CSV-quoted tweets are unquoted, inner doubled quotes restored, no tab or CR leaks
    quoted = [e.manifest.text_raw for e in train if '"' in e.manifest.text_raw]
    assert quoted and not any(t.startswith('"') and t.endswith('"') for t in quoted)
    assert not any("\t" in e.manifest.text_raw or "\r" in e.manifest.text_raw for e in items)
    assert len({e.manifest.id for e in items}) == len(items)

    def gold(level: str) -> dict[str, str]:
        return dict(row for row in csv.reader(open(folder / f"labels-level{level}.csv", newline=""))
                    if row[0] != "id")
    a, b, c = gold("a"), gold("b"), gold("c")
    assert (len(a), len(b), len(c)) == (860, 240, 213)
    for e in test:
        tweet_id = e.manifest.id.removeprefix("olid_test_")
        assert e.manifest.labels_raw == {"subtask_a": a[tweet_id], "subtask_b": b.get(tweet_id, "NULL"),
                                         "subtask_c": c.get(tweet_id, "NULL")}
    assert sum(e.manifest.labels_raw["subtask_b"] != "NULL" for e in test) == 240
    assert sum(e.manifest.labels_raw["subtask_c"] != "NULL" for e in test) == 213


# ---------------------------------------------------------------- synthetic releases


def test_mmhs150k_synthetic(tmp_path):
    root = tmp_path / "mmhs150k"
    def tweet(tweet_id: str, labels: list[int], labels_str: list[str], text: str) -> dict:
        return {"img_url": f"http://pbs.twimg.com/{tweet_id}.jpg", "labels": labels,
                "tweet_url": f"https://twitter.com/user/status/{tweet_id}", "tweet_text": text,
                "labels_str": labels_str}
    gt = {
        "1114679353714016256": tweet("1114679353714016256", [4, 1, 3], ["Religion", "Racist", "Homophobe"],
                                     "@user you people again https://t.co/x"),
        "1063020048816660480": tweet("1063020048816660480", [0, 0, 0], ["NotHate"] * 3, "my horses are lazy"),
        "1108927368075374593": tweet("1108927368075374593", [5, 0, 2], ["OtherHate", "NotHate", "Sexist"], "no split"),
        "1114558534635618305": tweet("1114558534635618305", [9, 0, 0], ["?", "NotHate", "NotHate"], "bad label"),
    }
    write(root / "MMHS150K_GT.json", json.dumps(gt))
    write(root / "splits" / "train_ids.txt", "1114679353714016256\n1114558534635618305\n")
    write(root / "splits" / "val_ids.txt", "1063020048816660480\n")
    write(root / "splits" / "test_ids.txt", "9999\n")
    write(root / "img_txt" / "1114679353714016256.json", json.dumps({"img_text": "ur a pussy"}))
    write(root / "img_txt" / "1108927368075374593.json", "{not json")
    items, skips = split_items("mmhs150k", root)
    assert [e.manifest.id for e in items] == ["mmhs150k_train_1114679353714016256",
                                              "mmhs150k_val_1063020048816660480", "mmhs150k_all_1108927368075374593"]
    first, second, third = items
    assert first.manifest.labels_raw == {"labels": [4, 1, 3], "labels_str": ["Religion", "Racist", "Homophobe"]}
    assert first.manifest.text_raw == gt["1114679353714016256"]["tweet_text"]
    assert first.manifest.image_path == str(root / "img_resized" / "1114679353714016256.jpg")
    assert first.ocr.lines[0].text == "ur a pussy" and first.ocr.source == "dataset_transcription"
    assert second.ocr is None  # no img_txt file: no OCR record
    assert third.manifest.split is None and third.ocr is None
    assert sorted(s.reason for s in skips) == ["label value outside the documented set",
                                               "unreadable img_txt (example kept without OCR)"]


def test_memotion2_synthetic(tmp_path):
    root = tmp_path / "memotion2"
    header = "Id,Image url,ocr_text,humour,sarcastic,offensive,motivational,overall_sentiment,classification_based_on\n"
    write(root / "memotion_train.csv", header
          + '1,http://i/1.jpg,"WHEN YOU ""FINALLY""\nGET IT",funny,little_sarcastic,slight,not_motivational,positive,image\n'
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


def make_memotion1_official(root: Path) -> Path:
    write(root / "memotion_dataset_7k" / "labels.csv",
          ",image_name,text_ocr,text_corrected,humour,sarcasm,offensive,motivational,overall_sentiment\n"
          "0,image_1.jpg,LOOK THERE MY FRIEND,LOOK THERE MY FRIEND,hilarious,general,not_offensive,not_motivational,very_positive\n"
          '1,image_2.jpeg,"two<LF>lines ocr","first line<LF>second, line",not_funny,general,not_offensive,motivational,very_positive\n'
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


def test_mami_synthetic_with_test_gold(tmp_path):
    root = tmp_path / "mami"
    write(root / "TRAINING" / "training.csv",
          "file_name\tmisogynous\tshaming\tstereotype\tobjectification\tviolence\tText Transcription\n"
          "1.jpg\t0\t0\t0\t0\t0\tMilk Milk.zip\n10.jpg\t1\t0\t0\t0\t1\t\"ROSES ARE RED, \"\"VIOLETS\"\"\"\n"
          "11.jpg\t1\t0\t0\n")
    write(root / "test" / "Test.csv", "file_name\tText Transcription\n15236.jpg\tsome text\n15805.jpg\tother\n")
    write(root / "test_labels.txt", "15236.jpg\t1\t0\t1\t0\t0\n")
    items, skips = split_items("mami", root)
    assert [e.manifest.id for e in items] == ["mami_training_1", "mami_training_10", "mami_test_15236"]
    assert items[1].manifest.labels_raw == {"misogynous": "1", "shaming": "0", "stereotype": "0",
                                            "objectification": "0", "violence": "1"}
    assert items[1].ocr.lines[0].text == 'ROSES ARE RED, "VIOLETS"'
    assert items[0].manifest.image_path == str(root / "TRAINING" / "1.jpg")
    assert items[2].manifest.labels_raw["stereotype"] == "1"
    assert items[2].manifest.image_path == str(root / "test" / "15236.jpg")
    assert [(Path(s.file).name, s.line, s.reason) for s in skips] == [
        ("training.csv", 4, "row with missing columns"), ("Test.csv", 3, "test id without a gold label")]


def test_mami_test_without_gold_is_unlabeled(tmp_path):
    write(tmp_path / "test" / "Test.csv", "file_name\tText Transcription\n15236.jpg\tsome text\n")
    (item,) = examples("mami", tmp_path)
    assert item.manifest.labels_raw is None and item.ocr.lines[0].text == "some text"


def test_hateful_memes_quirks(tmp_path):
    write(tmp_path / "data" / "dev.jsonl", '{"id":8291,"img":"img\\/08291.png","label":1,"text":"white people"}\n'
          '{"id":1,"img":"img\\/00001.png","label":0,"text":"x"}')  # no final newline
    write(tmp_path / "data" / "test.jsonl", '{"id":100,"img":"img\\/00100.png","text":"unlabeled"}\n'
          '{"id":101,"img":"img/00101.png","text":"broken"\n'
          '{"id":102,"text":"no img"}\n'
          '{"id":103,"img":"img/00103.png","label":7,"text":"bad label"}\n')
    items, skips = split_items("hateful_memes", tmp_path)
    assert [e.manifest.id for e in items] == ["hateful_memes_dev_08291", "hateful_memes_dev_00001",
                                              "hateful_memes_test_00100"]
    assert items[0].manifest.image_path == str(tmp_path / "data" / "img" / "08291.png")
    assert items[2].manifest.labels_raw is None
    assert [(Path(s.file).name, s.line, s.reason) for s in skips] == [
        ("test.jsonl", 2, "invalid JSON line"), ("test.jsonl", 3, "row with missing columns"),
        ("test.jsonl", 4, "label value outside the documented set")]


def test_olid_malformed_rows(tmp_path):
    write(tmp_path / "olid-training-v1.0.tsv", "id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n"
          "1\t\"quoted \"\"x\"\" tweet\"\tNOT\tNULL\tNULL\n\tempty id\tNOT\tNULL\tNULL\n3\tshort\tOFF\n"
          "4\tbad\tMAYBE\tNULL\tNULL\n", newline="\r\n")
    write(tmp_path / "testset-levela.tsv", "id\ttweet\n10\ta\n11\tno gold\n")
    write(tmp_path / "labels-levela.csv", "10,OFF\n")  # no header
    write(tmp_path / "labels-levelb.csv", "id,label\n10,UNT\n")
    items, skips = split_items("olid", tmp_path)
    assert [e.manifest.text_raw for e in items] == ['quoted "x" tweet', "a"]
    # labels-levelc.csv is absent: subtask_c is unknown (left out), not "NULL"
    assert items[1].manifest.labels_raw == {"subtask_a": "OFF", "subtask_b": "UNT"}
    assert [(Path(s.file).name, s.line, s.reason) for s in skips] == [
        ("olid-training-v1.0.tsv", 3, "empty id"), ("olid-training-v1.0.tsv", 4, "row with missing columns"),
        ("olid-training-v1.0.tsv", 5, "label value outside the documented set"),
        ("testset-levela.tsv", 3, "test id without a gold label")]


def test_errors_name_file_and_line(tmp_path):
    write(tmp_path / "hx" / "dataset.json", '{"1_gab": {"post_id": "1_gab",\n "annotators": [}')
    with pytest.raises(ReleaseError, match=r"dataset\.json:2: invalid JSON"):
        list(read_release("hatexplain", tmp_path / "hx"))
    write(tmp_path / "ol" / "olid-training-v1.0.tsv", "id\ttweet\tsubtask_a\n1\tx\tNOT\n")
    with pytest.raises(ReleaseError, match=r"olid-training-v1\.0\.tsv:1: header lacks column\(s\) \['subtask_b'"):
        list(read_release("olid", tmp_path / "ol"))
    write(tmp_path / "ol2" / "testset-levela.tsv", "id\ttweet\n1\tx\n")
    write(tmp_path / "ol2" / "labels-levela.csv", "id,label\n1,OFF\n1,NOT\n")
    with pytest.raises(ReleaseError, match=r"labels-levela\.csv:3: duplicate id '1'"):
        list(read_release("olid", tmp_path / "ol2"))


def test_files_are_found_by_name_and_ambiguity_is_an_error(tmp_path):
    posts = {"1_gab": {"post_id": "1_gab", "annotators": [{"label": "normal", "annotator_id": 1, "target": ["None"]}],
                       "rationales": [], "post_tokens": ["hi", "there"]}}
    write(tmp_path / "deep" / "er" / "dataset.json", json.dumps(posts))
    write(tmp_path / "a" / "post_id_divisions.json", json.dumps({"train": ["1_gab"], "val": [], "test": []}))
    write(tmp_path / "b" / "post_id_divisions.json", json.dumps({"train": ["1_gab"], "val": [], "test": []}))
    (item,) = examples("hatexplain", tmp_path)  # identical copies are fine
    assert item.manifest.id == "hatexplain_train_1_gab" and item.manifest.text_raw == "hi there"
    write(tmp_path / "b" / "post_id_divisions.json", json.dumps({"train": [], "val": ["1_gab"], "test": []}))
    with pytest.raises(ReleaseError, match="two different files named 'post_id_divisions.json'"):
        list(read_release("hatexplain", tmp_path))


def test_unknown_layout_names_folder_and_expected_files(tmp_path):
    write(tmp_path / "readme.txt", "nothing here")
    for name in SPECS:
        with pytest.raises(ReleaseError, match="unknown layout.*expected any of"):
            list(read_release(name, tmp_path))


# ---------------------------------------------------------------- HateCheck (diagnostic suite)

HATECHECK_HEADER = (",functionality,case_id,test_case,label_gold,target_ident,direction,focus_words,focus_lemma,"
                    "ref_case_id,ref_templ_id,templ_id,case_templ")


def test_hatecheck_real(real_dataset):
    """The whole suite as SOURCES.md counts it: 3,728 cases, 29 functionalities, labels and targets."""
    items = examples("hatecheck", real_dataset("hatecheck"))
    records = [item.manifest for item in items]
    assert len(records) == 3728 and len({r.id for r in records}) == 3728
    assert {r.split for r in records} == {"test"} and all(r.image_path is None for r in records)
    raw = [r.labels_raw for r in records]
    assert Counter(x["label_gold"] for x in raw) == {"hateful": 2563, "non-hateful": 1165}
    functionalities = Counter(x["functionality"] for x in raw)
    assert len(functionalities) == 29 and functionalities["counter_quote_nh"] == 173
    assert functionalities["slur_homonym_nh"] == 30 and functionalities["ident_pos_nh"] == 189
    # one gold label per functionality, named by its suffix
    assert all((x["label_gold"] == "hateful") == x["functionality"].endswith("_h") for x in raw)
    assert Counter(x["target_ident"] for x in raw) == {
        "gay people": 551, "women": 509, "disabled people": 484, "Muslims": 484, "black people": 482,
        "trans people": 463, "immigrants": 463, "": 292}
    assert Counter(x["direction"] for x in raw) == {"general": 1618, "directed": 945, "-": 1165}
    first = records[0]
    assert (first.id, first.text_raw) == ("hatecheck_test_1", "I hate women. ")  # the trailing space is the file's
    assert first.labels_raw == {"label_gold": "hateful", "target_ident": "women", "direction": "general",
                                "functionality": "derog_neg_emote_h", "case_templ": "I hate [IDENTITY_P]."}


def test_hatecheck_malformed_rows(tmp_path):
    write(tmp_path / "hc" / "test_suite_cases.csv", HATECHECK_HEADER + "\n"
          '0,slur_h,1,"You are just a x, to me. ",hateful,women,directed,x,x,,,1,You are just a [SLUR_S] to me.\n'
          "1,slur_h,2,short row,hateful\n"
          "2,slur_h,3,Unknown label. ,maybe,women,general,,,,,2,t\n"
          "\n"
          "4,slur_h, ,Empty id. ,hateful,women,general,,,,,3,t\n"
          "5,profanity_nh,6,Fucking hell. ,non-hateful,,-,,,,,4,Fucking hell.\n"
          "6,slur_h,7,Unknown group. ,hateful,martians,general,,,,,5,t\n")
    items, skips = split_items("hatecheck", tmp_path / "hc")
    assert [(e.manifest.id, e.manifest.text_raw) for e in items] == [
        ("hatecheck_test_1", "You are just a x, to me. "), ("hatecheck_test_6", "Fucking hell. ")]
    assert items[1].manifest.labels_raw["target_ident"] == "" and items[1].where.endswith("test_suite_cases.csv:7")
    assert [(Path(s.file).name, s.line, s.reason) for s in skips] == [
        ("test_suite_cases.csv", 3, "row with missing columns"),
        ("test_suite_cases.csv", 4, "label value outside the documented set"),
        ("test_suite_cases.csv", 6, "empty id"),
        ("test_suite_cases.csv", 8, "label value outside the documented set")]
    assert "label_gold='maybe'" in skips[1].detail and "target_ident='martians'" in skips[3].detail
    write(tmp_path / "bad" / "test_suite_cases.csv", "case_id,test_case,label_gold\n1,x,hateful\n")
    with pytest.raises(ReleaseError, match=r"test_suite_cases\.csv:1: header lacks column\(s\) \['target_ident'"):
        list(read_release("hatecheck", tmp_path / "bad"))
