"""The pilot's miniature of hatexplain in its native layout (the real release is read by
stages/releases/hatexplain.py)."""
from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import ABUSIVE_WORDS, EMOJI, GROUPS, JsonObjectFile, PilotExample, PilotRecipe, open_text, pick
from stages.releases.hatexplain import LABELS

PILOT_TARGETS = ("Refugee", "Minority", "Other", "Economic", "Immigrant")


def pilot_annotators(ex: PilotExample) -> list[dict]:
    """3 annotators. Abusive: a hatespeech (mostly) or offensive majority with agreed targets;
    benign: a normal majority; posts in no division: all three disagree."""
    rng = ex.rng("labels")
    if ex.split == "none":
        labels = list(LABELS)
        rng.shuffle(labels)
    else:
        main = (pick(rng, {"hatespeech": 0.85, "offensive": 0.15}) if ex.abusive else "normal")
        other = rng.choice(LABELS)
        labels = [main, main, other if rng.random() < 0.4 else main]
        rng.shuffle(labels)
    target = rng.choice(PILOT_TARGETS)
    annotators = []
    for label, annotator_id in zip(labels, rng.sample(range(1, 254), 3)):
        targets = ["None"]
        if label != "normal":  # annotators agree on the main target; some name a second one
            targets = [target] if rng.random() < 0.8 else sorted({target, rng.choice(PILOT_TARGETS)})
        annotators.append({"label": label, "annotator_id": annotator_id, "target": targets})
    return annotators


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """dataset.json (one line, post_id -> post, json.dumps defaults, ensure_ascii) +
    post_id_divisions.json (test/train/val, indent 4, no trailing newline)."""
    divisions: dict[str, list[str]] = {"test": [], "train": [], "val": []}  # ids only: small at any size
    with contextlib.ExitStack() as stack:
        data = JsonObjectFile(open_text(stack, folder / "dataset.json"))
        for ex in rows:
            rng = ex.rng("ids")
            if rng.random() < 0.4:
                post_id = f"{10_000_000 + ex.index * 1000 + rng.randrange(1000)}_gab"
            else:
                post_id = f"{1_178_000_000_000_000_000 + ex.index * 10**12 + rng.randrange(10**12)}_twitter"
            tokens = ex.text.split(" ")
            annotators = pilot_annotators(ex)
            marked = [token in ABUSIVE_WORDS or token in GROUPS for token in tokens]
            rationales = [[int(m and rng.random() < 0.85) for m in marked]  # one per non-normal annotator
                          for a in annotators if a["label"] != "normal"]
            data.write(post_id, {"post_id": post_id, "annotators": annotators, "rationales": rationales,
                                 "post_tokens": tokens})
            if ex.split in divisions:
                divisions[ex.split].append(post_id)
            counts[ex.split] += 1
        data.close()
    with open(folder / "post_id_divisions.json", "w", encoding="utf-8", newline="") as f:
        json.dump(divisions, f, indent=4)


def style_pilot(core: str, rng: random.Random) -> str:
    tokens = core.lower().replace(":", "").split()
    if rng.random() < 0.4:
        tokens.insert(0, "<user>")
    if rng.random() < 0.1:
        tokens.append(rng.choice(EMOJI[:5]))
    return " ".join(tokens)


RECIPE = PilotRecipe(split_slots={"train": 15, "val": 2, "test": 2, "none": 1}, abusive_share=0.55,
                     write=write_pilot, style=style_pilot)
