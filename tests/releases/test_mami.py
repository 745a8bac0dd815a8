"""MAMI (SemEval-2022 Task 5): TAB-separated training.csv and Test.csv with labels as "0"/"1",
the test joined with its gold file (test_labels.txt or truth.txt); without gold the test is unlabeled.

The adapter is stages/releases/mami.py; its docstring is the spec these tests check."""
from __future__ import annotations

import csv
from pathlib import Path

from stages.records import make_id
from tests.releases import examples, split_items, write


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

