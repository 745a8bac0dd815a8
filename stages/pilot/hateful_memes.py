"""The pilot's miniature of hateful_memes in its native layout (the real release is read by
stages/releases/hateful_memes.py)."""
from __future__ import annotations

import contextlib
import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import JsonlFile, PilotExample, PilotRecipe, open_text, save_image, unique_number

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


RECIPE = PilotRecipe(split_slots=PILOT_SLOTS, abusive_share=0.4, write=write_pilot, style=style_pilot)
