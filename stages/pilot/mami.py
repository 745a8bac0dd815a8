"""The pilot's miniature of mami in its native layout (the real release is read by
stages/releases/mami.py)."""
from __future__ import annotations

import contextlib
import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import WATERMARKS, PilotExample, PilotRecipe, csv_writer, maybe_append, save_image, unique_number

PILOT_SUBTYPE_SHARES = {"shaming": 0.25, "stereotype": 0.55, "objectification": 0.45, "violence": 0.2}


def pilot_labels(ex: PilotExample) -> list[str]:
    """misogynous + 4 sub-types as "0"/"1"; some misogynous memes have no sub-type (as in MAMI)."""
    rng = ex.rng("labels")
    if not ex.abusive:
        return ["0"] * 5
    subtypes = ["1" if rng.random() < p else "0" for p in PILOT_SUBTYPE_SHARES.values()]
    if "1" not in subtypes and rng.random() < 0.7:
        subtypes[1] = "1"
    return ["1", *subtypes]


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """TRAINING/training.csv and test/Test.csv (TAB, images beside them) + gold test_labels.txt."""
    with contextlib.ExitStack() as stack:
        training = csv_writer(stack, folder / "TRAINING" / "training.csv",
                              ["file_name", "misogynous", *PILOT_SUBTYPE_SHARES, "Text Transcription"], "\t")
        test = csv_writer(stack, folder / "test" / "Test.csv", ["file_name", "Text Transcription"], "\t")
        gold = csv_writer(stack, folder / "test_labels.txt", None, "\t")
        for ex in rows:
            if ex.split == "training":
                file_name = f"{unique_number(ex.index, 1, 14969, salt=11)}.jpg"
                training.writerow([file_name, *pilot_labels(ex), ex.text])
                image_dir = folder / "TRAINING"
            else:
                file_name = f"{unique_number(ex.index, 15000, 9941, salt=5)}.jpg"
                test.writerow([file_name, ex.text])
                gold.writerow([file_name, *pilot_labels(ex)])
                image_dir = folder / "test"
            save_image(ex.image, image_dir / file_name, "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


def style_pilot(core: str, rng: random.Random) -> str:
    text = core.upper() if rng.random() < 0.5 else core.capitalize()
    if rng.random() < 0.1:
        text = f'"{text}" they said'
    return maybe_append(text, rng, 0.25, WATERMARKS)


RECIPE = PilotRecipe(split_slots={"training": 16, "test": 4}, abusive_share=0.5, write=write_pilot,
                     style=style_pilot, about_women=True)
