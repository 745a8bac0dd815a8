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
from stages.releases import (Example, ReleaseError, ReleaseFiles, Skip, check_values, csv_table, release_path,
                             short_row_skip, transcription)

DATASET = "memotion2"
SPLITS = ("train", "val")
ALLOWED = {"humour": {"not_funny", "funny", "very_funny", "hilarious"},
           "sarcastic": {"not_sarcastic", "little_sarcastic", "very_sarcastic", "extremely_sarcastic"},
           "offensive": {"not_offensive", "slight", "very_offensive", "hateful_offensive"},
           "motivational": {"not_motivational", "motivational"},
           "overall_sentiment": {"very_negative", "negative", "neutral", "positive", "very_positive"}}


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [f"memotion_{split}.csv" for split in SPLITS])
    files.require_any(f"memotion_{split}.csv" for split in SPLITS)
    for split in SPLITS:
        path = files.file(f"memotion_{split}.csv")
        if path:
            image_dir = files.dir(f"{split}_images", path.parent / f"{split}_images")
            yield from _read_split(path, split, image_dir, files.folder)


def _read_split(path: Path, split: str, image_dir: Path, root: Path) -> Iterator[Example | Skip]:
    header, rows = csv_table(path)
    col = {name.strip().lower(): i for i, name in enumerate(header) if name.strip()}
    missing = [name for name in ("id", "ocr_text", *ALLOWED) if name not in col]
    if missing:
        raise ReleaseError(path, 1, f"header lacks column(s) {missing}; header is {header}")
    needed = max(col[name] for name in ("id", "ocr_text", *ALLOWED)) + 1
    for line, fields in rows:
        skip = short_row_skip(path, line, fields, needed)
        if skip:
            yield skip
            continue
        meme_id = fields[col["id"]].strip()
        if not meme_id:
            yield Skip(str(path), line, "empty id")
            continue
        labels = {name: fields[col[name]] for name in ALLOWED}
        bad = check_values(labels, ALLOWED)
        if bad:
            yield Skip(str(path), line, "label value outside the documented set", bad)
            continue
        image = release_path(root, image_dir, f"{meme_id}.jpg", path, line)
        if isinstance(image, Skip):
            yield image
            continue
        record = ManifestRecord(id=make_id(DATASET, split, meme_id), dataset=DATASET, split=split,
                                image_path=str(image), text_raw=None, labels_raw=labels)
        yield Example(record, transcription(record, fields[col["ocr_text"]]), f"{path}:{line}")
