"""The pilot's miniature of olid in its native layout (the real release is read by
stages/releases/olid.py)."""
from __future__ import annotations

import contextlib
import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import EMOJI, HASHTAGS, PilotExample, PilotRecipe, csv_writer, maybe_append, pick, unique_number


def pilot_labels(ex: PilotExample) -> tuple[str, str, str]:
    rng = ex.rng("labels")
    if not ex.abusive:
        return "NOT", "NULL", "NULL"
    if rng.random() < 0.15:
        return "OFF", "UNT", "NULL"
    return "OFF", "TIN", pick(rng, {"IND": 0.55, "GRP": 0.3, "OTH": 0.15})


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """olid-training-v1.0.tsv (CRLF, tweets with quotes CSV-quoted) + testset-level{a,b,c}.tsv and
    labels-level{a,b,c}.csv; level b holds only the OFF tweets, level c only OFF+TIN."""
    with contextlib.ExitStack() as stack:
        train = csv_writer(stack, folder / "olid-training-v1.0.tsv",
                           ["id", "tweet", "subtask_a", "subtask_b", "subtask_c"], "\t", crlf=True)
        tests = {level: csv_writer(stack, folder / f"testset-level{level}.tsv", ["id", "tweet"], "\t", crlf=True)
                 for level in "abc"}
        golds = {level: csv_writer(stack, folder / f"labels-level{level}.csv", ["id", "label"], crlf=True)
                 for level in "abc"}
        for ex in rows:
            tweet_id = unique_number(ex.index, 10000, 89963, salt=31337)
            a, b, c = pilot_labels(ex)
            if ex.split == "train":
                train.writerow([tweet_id, ex.text, a, b, c])
            else:
                for level, label in zip("abc", (a, b, c)):
                    if label != "NULL":
                        tests[level].writerow([tweet_id, ex.text])
                        golds[level].writerow([tweet_id, label])
            counts[ex.split] += 1


def style_pilot(core: str, rng: random.Random) -> str:
    text = core.capitalize()
    roll = rng.random()
    if roll < 0.12:
        text = f'He said "{core}" and meant it'  # quotes -> the TSV CSV-quotes this tweet
    elif roll < 0.18:
        text = f"{text} &amp; proud of it"
    mentions = rng.choice((0, 1, 1, 1, 2, 3))
    text = " ".join(["@USER"] * mentions + [text])
    text = maybe_append(maybe_append(text, rng, 0.2, HASHTAGS), rng, 0.08, EMOJI)
    if rng.random() < 0.25:
        text = f"{text} URL"
    return text


RECIPE = PilotRecipe(split_slots={"train": 16, "test": 4}, abusive_share=0.35, write=write_pilot, style=style_pilot)
