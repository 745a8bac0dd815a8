"""OLID v1.0 (OffensEval 2019): olid-training-v1.0.tsv + testset-levela.tsv joined with labels-level{a,b,c}.csv.

The TSVs CSV-quote tweets holding `"`, so they are read with a csv reader (tab delimiter); the
string NULL stays a string. Level b/c test labels cover only the OFF / OFF+TIN subsets: a test
tweet absent from them gets "NULL", as in the training file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (DatasetSpec, Example, ReleaseError, ReleaseFiles, Skip, TableRow, csv_rows,
                             csv_table, header_index, label_skip, table_rows)

DATASET = "olid"
SPLITS = ("train", "test")
TRAIN_FILE = "olid-training-v1.0.tsv"
OLD_TRAIN_FILE = "olid-training-v1.tsv"  # the name README.txt uses
TEST_FILE = "testset-levela.tsv"
LABEL_FILES = {"subtask_a": "labels-levela.csv", "subtask_b": "labels-levelb.csv", "subtask_c": "labels-levelc.csv"}
ALLOWED = {"subtask_a": {"OFF", "NOT"}, "subtask_b": {"TIN", "UNT", "NULL"}, "subtask_c": {"IND", "GRP", "OTH", "NULL"}}

log = logging.getLogger(__name__)


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [TRAIN_FILE, OLD_TRAIN_FILE, TEST_FILE, *LABEL_FILES.values()])
    files.require_any([TRAIN_FILE, OLD_TRAIN_FILE, TEST_FILE])
    train = files.file(TRAIN_FILE, OLD_TRAIN_FILE)
    if train:
        yield from _read_train(train)
    test = files.file(TEST_FILE)
    if test:
        gold = {task: files.file(name) for task, name in LABEL_FILES.items()}
        yield from _read_test(test, gold)


def _record(split: str, tweet_id: str, tweet: str, labels: dict | None) -> ManifestRecord:
    return ManifestRecord(id=make_id(DATASET, split, tweet_id), dataset=DATASET, split=split, image_path=None,
                          text_raw=tweet, labels_raw=labels)


def _rows(path: Path, required: list[str], labels: tuple[str, ...] = ()
          ) -> tuple[dict[str, int], Iterator[TableRow | Skip]]:
    header, rows = csv_table(path, delimiter="\t")
    col = header_index(path, header, required)
    label_columns = {task: col[task] for task in labels} if labels else None
    return col, table_rows(path, rows, len(col), col["id"], label_columns, ALLOWED)


def _read_train(path: Path) -> Iterator[Example | Skip]:
    col, rows = _rows(path, ["id", "tweet", *ALLOWED], tuple(ALLOWED))
    for row in rows:
        if isinstance(row, Skip):
            yield row
            continue
        yield Example(_record("train", row.id, row.fields[col["tweet"]], row.labels), None, f"{path}:{row.line}")


def _read_gold(path: Path) -> dict[str, str]:
    """id -> label from a labels-level?.csv (comma, with or without an `id,label` header)."""
    gold: dict[str, str] = {}
    for line, fields in csv_rows(path):
        if not fields or (line == 1 and fields[0].strip() == "id"):
            continue
        if len(fields) < 2 or not fields[0].strip():
            raise ReleaseError(path, line, f"expected `id,label`, got {fields}")
        tweet_id = fields[0].strip()
        if tweet_id in gold:
            raise ReleaseError(path, line, f"duplicate id {tweet_id!r}")
        gold[tweet_id] = fields[1].strip()
    return gold


def _read_test(path: Path, gold_files: dict[str, Path | None]) -> Iterator[Example | Skip]:
    gold = {task: _read_gold(p) for task, p in gold_files.items() if p}
    if "subtask_a" not in gold:
        log.warning("%s: no %s found; the OLID test tweets are ingested unlabeled", path, LABEL_FILES["subtask_a"])
    seen = set()
    col, rows = _rows(path, ["id", "tweet"])
    for row in rows:
        if isinstance(row, Skip):
            yield row
            continue
        seen.add(row.id)
        labels = None
        if "subtask_a" in gold:
            if row.id not in gold["subtask_a"]:
                yield Skip(str(path), row.line, "test id without a gold label",
                           f"{row.id} not in {gold_files['subtask_a']}")
                continue
            # a level file that is absent leaves its key out (unknown); present but silent means NULL
            labels = {task: gold[task].get(row.id, "NULL") for task in ALLOWED if task in gold}
            skip = label_skip(path, row.line, labels, ALLOWED)
            if skip:
                yield skip
                continue
        yield Example(_record("test", row.id, row.fields[col["tweet"]], labels), None, f"{path}:{row.line}")
    for task, labels in gold.items():
        unknown = sorted(set(labels) - seen)
        if unknown:
            log.warning("%s: %d gold label(s) for ids not in %s, e.g. %s", gold_files[task], len(unknown),
                        path.name, unknown[:3])


SPEC = DatasetSpec(DATASET, read_release, SPLITS, label_values=ALLOWED)
