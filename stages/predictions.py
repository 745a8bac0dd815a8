"""The experts' prediction files (Step_4/predictions/<expert>.jsonl, written by
stages/training/outputs.py), read back by example id: what fuse and the real-data benchmark consume."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from stages.errors import InputError
from stages.scores import val_part


class FuseError(InputError):
    """Predictions that cannot be read or fused; the message names file, line or field."""


@dataclass(frozen=True)
class PredictionRow:
    """One example as an expert scored it: gold label and P(class 1) per binary field (a categorical
    or multi-label head's list of probabilities is kept as read, and not fused)."""
    id: str
    dataset: str
    split: str
    labels: dict[str, Any]     # field -> 0/1 (binary), class index, 0/1 list, or None when not annotated
    probs: dict[str, Any]      # field -> P(class 1) (binary) or the head's probabilities


def parse_prediction_line(line: str, where: str) -> PredictionRow:
    """One line of Step_4/predictions/<expert>.jsonl (stages/training/outputs.py writes them):
    {id, dataset, split, labels: {field: ...}, probs: {field: ...}}."""
    try:
        row = json.loads(line)
        parsed = PredictionRow(str(row["id"]), str(row["dataset"]), str(row["split"]), row["labels"], row["probs"])
    except json.JSONDecodeError as err:
        raise FuseError(f"{where}: not JSON ({err.msg})") from None
    except (KeyError, TypeError) as err:
        raise FuseError(f"{where}: not a prediction row (missing or bad {err})") from None
    if not (isinstance(parsed.labels, dict) and isinstance(parsed.probs, dict)
            and set(parsed.labels) == set(parsed.probs)):
        raise FuseError(f"{where}: `labels` and `probs` must be objects naming the same fields")
    if not all(label is None or type(label) is int or isinstance(label, list) for label in parsed.labels.values()):
        raise FuseError(f"{where}: a gold label must be null, a class index or a 0/1 list, got {parsed.labels}")
    return parsed


def parse_predictions(lines: Iterable[str], source: str) -> dict[str, PredictionRow]:
    rows: dict[str, PredictionRow] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        row = parse_prediction_line(line, f"{source}:{number}")
        if row.id in rows:
            raise FuseError(f"{source}:{number}: id {row.id!r} appears twice")
        rows[row.id] = row
    return rows


def read_predictions(path: str | Path) -> dict[str, PredictionRow]:
    """An expert's predictions by example id."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FuseError(f"cannot read predictions {path}: {err}") from None
    return parse_predictions(text.splitlines(), str(path))


def is_binary_prob(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def binary_fields(rows: dict[str, PredictionRow]) -> set[str]:
    return {name for row in rows.values() for name, value in row.probs.items() if is_binary_prob(value)}


# ---------------------------------------------------------------- rows of both experts

EXPERTS = ("text", "vision")
EVALUATED_SPLITS = ("val_fit", "test")   # val_fit: val's fit part (scores.val_part), the only val fusion is fit on


def in_split(row_split: str, example_id: str, split: str) -> bool:
    """Whether an example of `row_split` is scored in `split` of EVALUATED_SPLITS ("val_fit": val's fit part)."""
    if split == "val_fit":
        return row_split == "val" and val_part(example_id) == "fit"
    return row_split == split


def contributors(text: PredictionRow | None, vision: PredictionRow | None, name: str) -> tuple[str, ...]:
    return tuple(expert for expert, row in zip(EXPERTS, (text, vision))
                 if row is not None and is_binary_prob(row.probs.get(name)))
