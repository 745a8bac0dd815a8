"""The diagnostic report: an expert's accuracy on the evaluation-only split (Step_3/shards/diagnostic,
e.g. HateCheck's functional tests), per functionality, per target group and per gold class.

Examples are grouped by their `aux.functionality` (a dataset without one is one group, named after
the dataset) and by `labels.target_group` ([] -> "(none)", null -> "(not annotated)"; a case naming
two groups counts in both). Accuracy thresholds P(class 1) at 0.5, as the val/test metrics do.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from stages.records import DIAGNOSTIC_SPLIT
from stages.shards import iter_examples

NO_GROUP, NOT_ANNOTATED = "(none)", "(not annotated)"
PLOT_NAME = "diagnostic_functionality"   # DVCLive custom plot: <live dir>/plots/custom/<name>.json


@dataclass(frozen=True)
class Case:
    dataset: str
    functionality: str
    target_groups: tuple[str, ...]


def read_cases(shard_dir: str | Path) -> dict[str, Case]:
    """id -> Case for every example of the diagnostic split (JSON members only, no images)."""
    cases = {}
    for example in iter_examples(shard_dir, DIAGNOSTIC_SPLIT, with_images=False):
        meta = example.meta
        groups = meta["labels"].get("target_group")
        functionality = (meta.get("aux") or {}).get("functionality") or meta["dataset"]
        cases[meta["id"]] = Case(meta["dataset"], functionality,
                                 (NOT_ANNOTATED,) if groups is None else tuple(groups) or (NO_GROUP,))
    return cases


class _Tally:
    def __init__(self):
        self.cases = self.correct = 0
        self.gold: set[int] = set()

    def add(self, label: int, right: bool) -> None:
        self.cases += 1
        self.correct += right
        self.gold.add(label)

    @property
    def accuracy(self) -> float:
        return round(self.correct / self.cases, 6)


def report(ids: Iterable[str], labels: Iterable[int], predicted: Iterable[int], cases: dict[str, Case],
           class_names: tuple[str, str]) -> dict[str, Any]:
    """The metrics file's `diagnostic` section from each case's gold label and the class the expert
    decided (training.predicted_class). Headline keys are flat (accuracy, accuracy_<class>, cases);
    `by_functionality.<name>` holds gold class, cases and accuracy."""
    overall, by_class = _Tally(), defaultdict(_Tally)
    by_functionality, by_group = defaultdict(_Tally), defaultdict(_Tally)
    for example_id, label, decided in zip(ids, labels, predicted):
        label, case = int(label), cases[example_id]
        right = int(decided) == label
        for tally in (overall, by_class[label], by_functionality[case.functionality],
                      *(by_group[g] for g in case.target_groups)):
            tally.add(label, right)
    if not overall.cases:
        return {"cases": 0}
    return {
        "datasets": sorted({case.dataset for case in cases.values()}),
        "cases": overall.cases,
        "accuracy": overall.accuracy,
        **{f"accuracy_{class_names[label]}": by_class[label].accuracy for label in sorted(by_class)},
        "by_functionality": {name: {"gold": class_names[next(iter(t.gold))] if len(t.gold) == 1 else "mixed",
                                    "cases": t.cases, "accuracy": t.accuracy}
                             for name, t in sorted(by_functionality.items())},
        "by_target_group": {name: {"cases": t.cases, "accuracy": t.accuracy} for name, t in sorted(by_group.items())},
    }


def plot_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    """Datapoints of the per-functionality bar plot (one bar per functionality)."""
    return [{"functionality": name, "accuracy": values["accuracy"], "gold": values["gold"], "cases": values["cases"]}
            for name, values in section.get("by_functionality", {}).items()]


def summary_line(section: dict[str, Any], worst: int = 3) -> str:
    if "skipped" in section:
        return f"diagnostic: skipped ({section['skipped']})"
    if not section.get("cases"):
        return "diagnostic: no labeled cases"
    per_class = ", ".join(f"{k.removeprefix('accuracy_')} {v:.3f}" for k, v in section.items()
                          if k.startswith("accuracy_"))
    lowest = sorted(section["by_functionality"].items(), key=lambda item: (item[1]["accuracy"], item[0]))[:worst]
    return (f"diagnostic ({', '.join(section['datasets'])}, {section['cases']} cases): accuracy "
            f"{section['accuracy']:.3f} ({per_class}); lowest: "
            + ", ".join(f"{name} {values['accuracy']:.3f}" for name, values in lowest))
