"""Memotion 2.0 (DE-FACTIFY @ AAAI-22): memotion_train.csv / memotion_val.csv (comma, header
Id, Image url, ocr_text, humour, sarcastic, offensive, motivational, overall_sentiment,
classification_based_on) + train_images/<Id>.jpg, val_images/<Id>.jpg.

The column is `sarcastic` with its own values (unlike Memotion 1's `sarcasm`). Values outside the
documented vocabulary are counted skips.
"""
from __future__ import annotations

import contextlib
import string
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from stages.pilot_kit import PilotExample, csv_writer, ocr_noise, random_code, save_image
from stages.records import ManifestRecord, make_id
from stages.releases import (DatasetSpec, Example, PilotRecipe, ReleaseFiles, Skip, csv_table, header_index,
                             release_path, table_rows, transcription)
from stages.releases.memotion1 import HUMOUR, MOTIVATIONAL, OFFENSIVE, SENTIMENT, pilot_labels, style_pilot

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


# ---------------------------------------------------------------- the pilot's miniature


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """memotion_train.csv / memotion_val.csv (comma, LF) + train_images/<Id>.jpg, val_images/<Id>.jpg."""
    header = ["Id", "Image url", "ocr_text", "humour", "sarcastic", "offensive", "motivational",
              "overall_sentiment", "classification_based_on"]
    with contextlib.ExitStack() as stack:
        files = {s: csv_writer(stack, folder / f"memotion_{s}.csv", header) for s in SPLITS}
        for ex in rows:
            rng = ex.rng("fields")
            url = f"https://i.redd.it/{random_code(rng, 13, string.ascii_lowercase + string.digits)}.jpg"
            based_on = rng.choice(("image", "text", "image and text"))
            files[ex.split].writerow([ex.index, url, ocr_noise(ex.text, rng), *pilot_labels(ex, SARCASTIC),
                                      based_on])
            save_image(ex.image, folder / f"{ex.split}_images" / f"{ex.index}.jpg", "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values=ALLOWED,
                   pilot=PilotRecipe(split_slots={"train": 16, "val": 4}, abusive_share=0.35, write=write_pilot,
                                     style=style_pilot))
