"""HateCheck (Röttger et al., ACL 2021): test_suite_cases.csv, 3,728 functional test cases.

A diagnostic suite, evaluation only (params `split.diagnostic_datasets`): comma-separated,
RFC-4180 quoting, a leading unnamed index column; one row per case with its functionality (29),
gold label (hateful / non-hateful), targeted protected group (empty for untargeted cases),
direction (general / directed; "-" on non-hateful cases) and template. The release has no
splits: every case is ingested in the original split "test" (it is a test suite).
"""
from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (DatasetSpec, Example, PilotRecipe, ReleaseError, ReleaseFiles, Skip, csv_rows,
                             header_index, table_rows)

DATASET = "hatecheck"
SPLITS = ("test",)
CASES_FILE = "test_suite_cases.csv"
LABEL_FIELDS = ("label_gold", "target_ident", "direction", "functionality", "case_templ")
TARGETS = ("women", "trans people", "gay people", "black people", "disabled people", "Muslims", "immigrants")
ALLOWED = {"label_gold": {"hateful", "non-hateful"}, "target_ident": {"", *TARGETS},
           "direction": {"general", "directed", "-"}}


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [CASES_FILE])
    files.require_any([CASES_FILE])
    path = files.file(CASES_FILE)
    rows = csv_rows(path)
    first = next(rows, None)
    if first is None:
        raise ReleaseError(path, 1, "empty file (expected a header)")
    col = header_index(path, first[1], ["case_id", "test_case", *LABEL_FIELDS])
    data = ((line, fields) for line, fields in rows if fields)  # csv yields [] for blank lines
    for row in table_rows(path, data, max(col.values()) + 1, col["case_id"],
                          {name: col[name] for name in LABEL_FIELDS}, ALLOWED):
        if isinstance(row, Skip):
            yield row
            continue
        record = ManifestRecord(id=make_id(DATASET, "test", row.id), dataset=DATASET, split="test",
                                image_path=None, text_raw=row.fields[col["test_case"]], labels_raw=row.labels)
        yield Example(record, None, f"{path}:{row.line}")


# ---------------------------------------------------------------- the pilot's miniature

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


SPEC = DatasetSpec(DATASET, read_release, SPLITS, label_values=ALLOWED,
                   pilot=PilotRecipe(split_slots={"test": 20}, abusive_share=0.6, write=write_pilot, style=style_pilot))
