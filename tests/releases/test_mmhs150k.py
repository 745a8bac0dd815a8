"""MMHS150K: MMHS150K_GT.json (one object keyed by tweet id, three AMT votes per tweet) +
splits/{train,val,test}_ids.txt + img_txt/<id>.json OCR; tweets in no split file get split None.

The adapter is stages/releases/mmhs150k.py; its docstring is the spec these tests check."""
from __future__ import annotations

import json

from tests.releases import split_items, write


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

