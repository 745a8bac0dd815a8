"""OLID v1.0 (OffensEval 2019): the training TSV (tweets with quotes CSV-quoted, NULL a string) and
testset-levela.tsv joined with labels-level{a,b,c}.csv (b and c cover only the OFF subsets).

The adapter is stages/releases/olid.py; its docstring is the spec these tests check."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from tests.releases import examples, split_items, write


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

