"""The one class-balance check of Step 3: split reports it on its assignment, pack on what it packed.

Balance is judged where the pipeline chooses the split: inside each created or carved pool (one
dataset's examples that the split stage divides, e.g. "olid/carve" = OLID train carved into train
and val). In every split such a pool feeds, each class's share of the labelled examples must be
within `tolerance` of the pool's overall share. A split part with fewer than `min_examples`
labelled examples is recorded but not judged (too few to say anything). Official splits are kept
as released and never judged: their class counts are reported, not a verdict. The class is the
stratum: the first of the taxonomy's `stratify_on` fields the example has (abuse_hate, else
offensive), as the split stage stratifies.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from stages.records import SPLITS

POOL_KINDS = ("carve", "create")
TOLERANCE_LIMITS = {"min": 0.0, "max": 1.0}   # split.balance_tolerance: a difference of class shares
# split.balance_tolerance and balance_min_examples when unset (pack's too, run by hand without the flags)
DEFAULT_TOLERANCE, DEFAULT_MIN_EXAMPLES = 0.05, 20
NOT_JUDGED = ("unlabeled", "label_error")  # strata outside the check


def stratum(labeled: bool | None, labels: Mapping[str, Any] | None, stratify_on: Sequence[str]) -> str:
    """The class an example is stratified and balance-checked on: `<field>=<value>` of the first of
    the `stratify_on` fields (Taxonomy.stratify_on) it has (labeled None: labels unmappable)."""
    if labeled is None:
        return "label_error"
    if not labeled:
        return "unlabeled"
    for field in stratify_on:
        if labels[field] is not None:
            return f"{field}={labels[field]}"
    return "no_binary_label"


def pool_target(dataset: str, orig_split: str | None, official: dict[str, dict[str, str]]) -> str | None:
    """What `releases.official` does with an original split (a null one is always `create`)."""
    return "create" if orig_split is None else official.get(dataset, {}).get(orig_split)


def pool_of(dataset: str, orig_split: str | None, official: dict[str, dict[str, str]]) -> str | None:
    """"<dataset>/<carve|create>" for an example the split stage assigned, None for an official split."""
    target = pool_target(dataset, orig_split, official)
    return f"{dataset}/{target}" if target in POOL_KINDS else None


def balance_check(tally: dict[str, dict[str, Counter]], tolerance: float,
                  min_examples: int) -> tuple[dict[str, Any], list[str]]:
    """The check on `tally` (pool -> split -> stratum -> count) and its warnings."""
    pools, warnings = {}, []
    for pool, per_split in sorted(tally.items()):
        counts = {split: Counter({c: n for c, n in per_split[split].items() if c not in NOT_JUDGED})
                  for split in SPLITS if split in per_split}
        overall = sum(counts.values(), Counter())
        total = sum(overall.values())
        if not total:
            continue
        entry = {"overall": {c: round(n / total, 4) for c, n in sorted(overall.items())}, "splits": {}, "ok": True}
        for split, split_counts in counts.items():
            n = sum(split_counts.values())
            deviation = {c: abs(split_counts[c] / n - overall[c] / total) for c in sorted(overall)} if n else {}
            judged = n >= min_examples and n > 0
            ok = not judged or max(deviation.values()) <= tolerance + 1e-9
            entry["splits"][split] = {"n": n, "shares": {c: round(split_counts[c] / n, 4) if n else None
                                                         for c in sorted(overall)},
                                      "max_deviation": round(max(deviation.values()), 4) if n else None,
                                      "judged": judged, "ok": ok}
            if not ok:
                worst = max(deviation, key=deviation.get)
                warnings.append(f"balance {pool}: class {worst} is {split_counts[worst] / n:.1%} of {split} vs "
                                f"{overall[worst] / total:.1%} overall (tolerance +-{tolerance:.0%})")
            entry["ok"] &= ok
        pools[pool] = entry
    report = {"ok": all(e["ok"] for e in pools.values()), "tolerance": tolerance, "min_examples": min_examples,
              "pools": pools}
    return report, warnings


def balance_line(report: dict[str, Any]) -> str:
    """How both stages print the check: one line, the same words."""
    judged = sum(s["judged"] for e in report["pools"].values() for s in e["splits"].values())
    off = [f"{pool} {split}" for pool, e in report["pools"].items() for split, s in e["splits"].items() if not s["ok"]]
    verdict = "ok" if report["ok"] else "OFF (" + ", ".join(off) + ")"
    return (f"class balance within +-{report['tolerance']:.0%} in created/carved splits: {verdict} "
            f"({judged} split parts judged, parts under {report['min_examples']} labelled examples are not)")
