"""The pilot's miniature of memotion2 in its native layout (the real release is read by
stages/releases/memotion2.py)."""
from __future__ import annotations

import contextlib
import string
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import PilotExample, PilotRecipe, csv_writer, ocr_noise, random_code, save_image
from stages.pilot.memotion1 import pilot_labels, style_pilot
from stages.releases.memotion2 import SARCASTIC, SPLITS


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


RECIPE = PilotRecipe(split_slots={"train": 16, "val": 4}, abusive_share=0.35, write=write_pilot, style=style_pilot)
