"""Facebook Hateful Memes: <split>.jsonl files with {"id", "img", "label", "text"} per line.

Ids are keyed on the `img` stem ("img/08291.png" -> 08291): the JSON `id` is an integer and has
lost its leading zeros. test_unseen (Phase 2) and test (Phase 1) have no `label` key -> labels_raw
None; a row without a label in any other split is a counted `missing_label` skip. The meme text is
the release's transcription -> one OCR line.
"""
from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from stages.pilot_kit import JsonlFile, PilotExample, open_text, save_image, unique_number
from stages.records import ManifestRecord, make_id
from stages.releases import (LABEL_OUTSIDE, MISSING_LABEL, DatasetSpec, Example, PilotRecipe, ReleaseFiles, Skip,
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


# ---------------------------------------------------------------- the pilot's miniature

# Original split -> slots per block of 20 (ratios near the release's). "dev_unseen" slots are
# dev_unseen-only memes; most dev_unseen rows repeat dev_seen ones.
PILOT_SLOTS = {"train": 13, "dev_seen": 2, "dev_unseen": 1, "test_seen": 2, "test_unseen": 2}

def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """{split}.jsonl with integer ids (leading zeros lost) and `img` paths; test_unseen has no label;
    dev_unseen repeats most dev_seen rows; only dev_seen ends with a newline (as in the release)."""
    with contextlib.ExitStack() as stack:
        files = {s: JsonlFile(open_text(stack, folder / f"{s}.jsonl"), final_newline=s == "dev_seen")
                 for s in PILOT_SLOTS}
        for ex in rows:
            meme_id = unique_number(ex.index, 1, 99989, salt=4242)
            img = f"img/{meme_id:05d}.png"
            save_image(ex.image, folder / img, "png")
            counts["images"] += 1
            row = {"id": meme_id, "img": img, "label": int(ex.abusive), "text": ex.text}
            if ex.split == "test_unseen":
                del row["label"]
            files[ex.split].write(row)
            counts[ex.split] += 1
            if ex.split == "dev_seen" and ex.rng("dev_unseen").random() < 0.8:
                files["dev_unseen"].write(row)
                counts["dev_unseen"] += 1
        for f in files.values():
            f.close()


def style_pilot(core: str, rng: random.Random) -> str:
    if rng.random() < 0.03:
        return core + " "  # a few real texts end with a space or hold a double space
    if rng.random() < 0.03:
        return core.replace(" ", "  ", 1)
    return core


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values={"label": frozenset(LABELS)},
                   pilot=PilotRecipe(split_slots=PILOT_SLOTS, abusive_share=0.4, write=write_pilot, style=style_pilot))
