"""HateCheck (Röttger et al., ACL 2021): test_suite_cases.csv, 3,728 functional test cases.

A diagnostic suite, evaluation only (params `split.diagnostic_datasets`): comma-separated,
RFC-4180 quoting, a leading unnamed index column; one row per case with its functionality (29),
gold label (hateful / non-hateful), targeted protected group (empty for untargeted cases),
direction (general / directed; "-" on non-hateful cases) and template. The release has no
splits: every case is ingested in the original split "test" (it is a test suite).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (DatasetSpec, Example, ReleaseError, ReleaseFiles, Skip, csv_rows,
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


SPEC = DatasetSpec(DATASET, read_release, SPLITS, label_values=ALLOWED)
