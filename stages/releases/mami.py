"""MAMI (SemEval-2022 Task 5): TAB-separated files, labels as the strings "0"/"1".

training: TRAINING/training.csv (header file_name, 5 labels, Text Transcription) + images beside it.
test:     test/Test.csv (file_name, Text Transcription) + images beside it, joined with the gold
          test_labels.txt (no header) or truth.txt (same with a header). A gold file alone is
          ingested on its own (no transcription). Without any gold file the test memes are unlabeled.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (DatasetSpec, Example, ReleaseError, ReleaseFiles, Skip, csv_rows, csv_table,
                             header_index, label_skip, release_path, table_rows, transcription)

DATASET = "mami"
SPLITS = ("training", "test")
TRAIN_FILE = "training.csv"
TEST_FILE = "Test.csv"
GOLD_FILES = ("test_labels.txt", "truth.txt")
LABELS = ("misogynous", "shaming", "stereotype", "objectification", "violence")
TEXT = "Text Transcription"
ALLOWED = {name: {"0", "1"} for name in LABELS}

log = logging.getLogger(__name__)


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [TRAIN_FILE, TEST_FILE, *GOLD_FILES])
    files.require_any([TRAIN_FILE, TEST_FILE, *GOLD_FILES])
    train = files.file(TRAIN_FILE)
    if train:
        yield from _read_table(train, "training", None, files.folder)
    test, gold_path = files.file(TEST_FILE), files.file(*GOLD_FILES)
    gold = _read_gold(gold_path) if gold_path else None
    if test:
        yield from _read_table(test, "test", gold and (gold_path, gold), files.folder)
    elif gold_path:
        yield from _read_gold_only(gold_path, gold, files.dir("test", gold_path.parent), files.folder)


def _example(split: str, file_name: str, image: Path, labels: dict | None, text: str | None,
             where: str) -> Example:
    record = ManifestRecord(id=make_id(DATASET, split, Path(file_name).stem), dataset=DATASET, split=split,
                            image_path=str(image), text_raw=None, labels_raw=labels)
    return Example(record, transcription(record, text), where)


def _read_table(path: Path, split: str, gold: tuple[Path, dict] | None, root: Path) -> Iterator[Example | Skip]:
    """training.csv (labels inline) or Test.csv (labels from the gold file, if any)."""
    header, rows = csv_table(path, delimiter="\t")
    required = ["file_name", *LABELS, TEXT] if split == "training" else ["file_name", TEXT]
    col = header_index(path, header, required)
    seen = set()
    inline = {name: col[name] for name in LABELS} if split == "training" and gold is None else None
    for row in table_rows(path, rows, len(col), col["file_name"]):
        if isinstance(row, Skip):
            yield row
            continue
        seen.add(row.id)
        labels = inline and {name: row.fields[i] for name, i in inline.items()}
        if gold is not None:
            if row.id not in gold[1]:
                yield Skip(str(path), row.line, "test id without a gold label", f"{row.id} not in {gold[0]}")
                continue
            labels = gold[1][row.id][1]
        skip = labels and label_skip(path, row.line, labels, ALLOWED)
        if skip:
            yield skip
            continue
        image = release_path(root, path.parent, row.id, path, row.line)
        if isinstance(image, Skip):
            yield image
            continue
        yield _example(split, row.id, image, labels, row.fields[col[TEXT]], f"{path}:{row.line}")
    if gold:
        unknown = sorted(set(gold[1]) - seen)
        if unknown:
            log.warning("%s: %d gold label(s) for memes not in %s, e.g. %s", gold[0], len(unknown), path.name,
                        unknown[:3])


def _read_gold(path: Path) -> dict[str, tuple[int, dict[str, str]]]:
    """file_name -> (line, labels) from test_labels.txt / truth.txt (TAB, header optional)."""
    gold: dict[str, tuple[int, dict[str, str]]] = {}
    for line, fields in csv_rows(path, delimiter="\t"):
        if not fields or (line == 1 and fields[0].strip() == "file_name"):
            continue
        if len(fields) < 1 + len(LABELS) or not fields[0].strip():
            raise ReleaseError(path, line, f"expected file_name and {len(LABELS)} labels, got {fields}")
        file_name = fields[0].strip()
        if file_name in gold:
            raise ReleaseError(path, line, f"duplicate file_name {file_name!r} (first on line {gold[file_name][0]})")
        gold[file_name] = (line, dict(zip(LABELS, fields[1:1 + len(LABELS)])))
    return gold


def _read_gold_only(path: Path, gold: dict, image_dir: Path, root: Path) -> Iterator[Example | Skip]:
    log.warning("%s: no %s found; the gold labels are ingested without transcriptions", path, TEST_FILE)
    for file_name, (line, labels) in gold.items():
        skip = label_skip(path, line, labels, ALLOWED)
        if skip:
            yield skip
            continue
        image = release_path(root, image_dir, file_name, path, line)
        if isinstance(image, Skip):
            yield image
            continue
        yield _example("test", file_name, image, labels, None, f"{path}:{line}")


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values=ALLOWED)
