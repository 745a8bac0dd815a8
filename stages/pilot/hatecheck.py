"""The pilot's miniature of hatecheck in its native layout (the real release is read by
stages/releases/hatecheck.py)."""
from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import PilotRecipe
from stages.releases.hatecheck import CASES_FILE, TARGETS

# A few of the 29 functionalities per class (cycled): enough for a per-functionality report.
PILOT_FUNCTIONALITIES = {True: ("derog_neg_emote_h", "threat_dir_h", "slur_h"),
                         False: ("ident_neutral_nh", "counter_quote_nh", "target_obj_nh")}
PILOT_HEADER = ["", "functionality", "case_id", "test_case", "label_gold", "target_ident", "direction",
                "focus_words", "focus_lemma", "ref_case_id", "ref_templ_id", "templ_id", "case_templ"]


def write_pilot(folder: Path, rows: Iterable, counts: Counter) -> None:
    """test_suite_cases.csv with the release's header (unnamed index column, LF, trailing space
    after each case). Texts are the pilot's synthetic sentences (their own template); the target
    is drawn from the seven groups (empty for target_obj_nh, as in the release)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / CASES_FILE, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PILOT_HEADER)
        for ex in rows:
            rng: random.Random = ex.rng("fields")
            choices = PILOT_FUNCTIONALITIES[ex.abusive]
            functionality = choices[ex.index % len(choices)]
            target = "" if functionality == "target_obj_nh" else rng.choice(TARGETS)
            direction = rng.choice(("general", "directed")) if ex.abusive else "-"
            templ_id = 1 + ex.index // 3
            writer.writerow([ex.index, functionality, ex.index + 1, ex.text + " ",
                             "hateful" if ex.abusive else "non-hateful", target, direction, "", "", "", "",
                             templ_id, ex.text])
            counts[ex.split] += 1


def style_pilot(core: str, rng: random.Random) -> str:
    return core[:1].upper() + core[1:] + "."


RECIPE = PilotRecipe(split_slots={"test": 20}, abusive_share=0.6, write=write_pilot, style=style_pilot)
