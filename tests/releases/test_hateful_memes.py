"""Facebook Hateful Memes: one <split>.jsonl per split, {"id", "img", "label", "text"} per line;
ids keyed on the `img` stem (the integer `id` lost its leading zeros); test_unseen/test unlabeled.

The adapter is stages/releases/hateful_memes.py; its docstring is the spec these tests check."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from stages.records import make_id
from tests.releases import examples, split_items, write


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

