"""Memotion 2.0 (DE-FACTIFY @ AAAI-22): memotion_train.csv / memotion_val.csv (comma, header
Id, Image url, ocr_text, humour, sarcastic, offensive, motivational, overall_sentiment,
classification_based_on) + train_images/<Id>.jpg, val_images/<Id>.jpg.

The column is `sarcastic` with its own values (unlike Memotion 1's `sarcasm`). Values outside the
documented vocabulary are counted skips.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (DatasetSpec, Example, ReleaseFiles, Skip, csv_table, header_index,
                             release_path, table_rows, transcription)
from stages.releases.memotion1 import HUMOUR, MOTIVATIONAL, OFFENSIVE, SENTIMENT

DATASET = "memotion2"
SPLITS = ("train", "val")
SARCASTIC = ("not_sarcastic", "little_sarcastic", "very_sarcastic", "extremely_sarcastic")
ALLOWED = {"humour": set(HUMOUR), "sarcastic": set(SARCASTIC), "offensive": set(OFFENSIVE),
           "motivational": set(MOTIVATIONAL), "overall_sentiment": set(SENTIMENT)}


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files, present = ReleaseFiles.per_split(folder, "memotion_{split}.csv", SPLITS)
    for split, path in present:
        image_dir = files.dir(f"{split}_images", path.parent / f"{split}_images")
        yield from _read_split(path, split, image_dir, files.folder)


def _read_split(path: Path, split: str, image_dir: Path, root: Path) -> Iterator[Example | Skip]:
    header, rows = csv_table(path)
    col = header_index(path, header, ("id", "ocr_text", *ALLOWED), lambda name: name.strip().lower())
    needed = max(col[name] for name in ("id", "ocr_text", *ALLOWED)) + 1
    for row in table_rows(path, rows, needed, col["id"], {name: col[name] for name in ALLOWED}, ALLOWED):
        if isinstance(row, Skip):
            yield row
            continue
        image = release_path(root, image_dir, f"{row.id}.jpg", path, row.line)
        if isinstance(image, Skip):
            yield image
            continue
        record = ManifestRecord(id=make_id(DATASET, split, row.id), dataset=DATASET, split=split,
                                image_path=str(image), text_raw=None, labels_raw=row.labels)
        yield Example(record, transcription(record, row.fields[col["ocr_text"]]), f"{path}:{row.line}")


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values=ALLOWED)
