"""Facebook Hateful Memes: <split>.jsonl files with {"id", "img", "label", "text"} per line.

Ids are keyed on the `img` stem ("img/08291.png" -> 08291): the JSON `id` is an integer and has
lost its leading zeros. test_unseen (Phase 2) and test (Phase 1) have no `label` key -> labels_raw
None; a row without a label in any other split is a counted `missing_label` skip. The meme text is
the release's transcription -> one OCR line.
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (LABEL_OUTSIDE, MISSING_LABEL, DatasetSpec, Example, ReleaseFiles, Skip,
                             release_path, text_lines, transcription)

DATASET = "hateful_memes"
# Phase 2 names, then the Phase 1 names (dev.jsonl / test.jsonl) of older copies.
SPLITS = ("train", "dev_seen", "dev_unseen", "test_seen", "test_unseen", "dev", "test")
UNLABELED_SPLITS = ("test_unseen", "test")  # released without labels
LABELS = (0, 1)


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files, present = ReleaseFiles.per_split(folder, "{split}.jsonl", SPLITS)
    for split, path in present:
        yield from _read_split(path, split, files.folder)


def _read_split(path: Path, split: str, root: Path) -> Iterator[Example | Skip]:
    for line, text in text_lines(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            yield Skip(str(path), line, "invalid JSON line", f"{e.msg} at column {e.colno}")
            continue
        problem = _problem(row, split)
        if problem:
            yield Skip(str(path), line, *problem)
            continue
        # "img/08291.png", relative to the folder holding the jsonl files
        image = release_path(root, path.parent, row["img"], path, line)
        if isinstance(image, Skip):
            yield image
            continue
        labels = {"label": row["label"]} if row.get("label") is not None else None
        record = ManifestRecord(id=make_id(DATASET, split, _img(row).stem), dataset=DATASET, split=split,
                                image_path=str(image), text_raw=None, labels_raw=labels)
        yield Example(record, transcription(record, row["text"]), f"{path}:{line}")


def _img(row: dict) -> PurePosixPath:
    return PurePosixPath(row["img"].replace("\\", "/"))


def _problem(row, split: str) -> tuple[str, str] | None:
    if not isinstance(row, dict):
        return "malformed row", f"expected a JSON object, got {type(row).__name__}"
    for key in ("img", "text"):
        if not isinstance(row.get(key), str):
            return "row with missing columns", f"'{key}' missing or not a string"
    if not _img(row).stem.strip():
        return "empty id", "'img' has no file name"
    if row.get("label") is not None and (row["label"] not in LABELS or isinstance(row["label"], bool)):
        return LABEL_OUTSIDE, f"label={row['label']!r:.40} is not 0 or 1"
    if row.get("label") is None and split not in UNLABELED_SPLITS:
        return MISSING_LABEL, f"no 'label' in {split}, a labelled split"
    return None


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values={"label": frozenset(LABELS)})
