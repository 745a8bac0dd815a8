"""The split stage's state and its report (Step_3/split_report.json) and console summary.

`SplitState` holds what split knows per record (lists indexed like `records`) and what it
decided; `build_report` turns it into the checks and counts of the report.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from stages import balance
from stages.dedupe import EXAMPLES, NOT_HASHED, Duplicates, ImageHash
from stages.records import EVAL_SPLITS, SPLITS, ManifestRecord, evaluation_splits
from stages.taxonomy import UnifiedLabels


@dataclass
class SplitState:
    records: list[ManifestRecord]
    labels: list[UnifiedLabels | None]  # None: raw labels the taxonomy does not know
    label_errors: list[str]
    strata: list[str]                   # the class a record is stratified and balance-checked on
    texts: list[str]                    # the normalised text content groups compare
    hashes: list[ImageHash | None]      # None: no image
    groups: list[int]                   # content group (its smallest member index)
    links: dict[str, Any]               # link counts and examples per kind (dedupe.content_groups)
    split_of: list[str]
    pools: list[str | None]             # "carve" | "create"; None: an official split
    kept: list[bool] = field(init=False)  # False: dropped as a duplicate
    duplicates: Duplicates = field(init=False)

    def __post_init__(self):
        self.kept = [True] * len(self.records)

    @property
    def protected(self) -> list[bool]:
        """Examples of official evaluation files: never dropped, except as copies of another such file."""
        return [pool is None and split in EVAL_SPLITS for pool, split in zip(self.pools, self.split_of)]

    def kept_indices(self) -> list[int]:
        return [i for i, k in enumerate(self.kept) if k]


def build_report(state: SplitState, config) -> dict[str, Any]:
    """The report of `config` (a SplitConfig) applied to `state`."""
    warnings_: list[str] = []
    balance_report = _balance(state, config, warnings_)
    if state.label_errors:
        warnings_.append(f"{len(state.label_errors)} records have raw labels the taxonomy does not know "
                         f"(kept in splits; pack will count them as failures), e.g. {state.label_errors[0]}")
    images = _images(state, warnings_)
    straddling_pools = _pool_groups_straddling(state)
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "workers"},  # workers never change results
        "totals": _totals(state),
        "counts": _counts(state),
        "unlabeled": _nested_count(state, "unlabeled"),
        "images": images,
        "groups": _groups(state),
        "exact_duplicates": _exact_duplicates(state),
        "cross_split_duplicates": _cross_split_duplicates(state),
        "checks": {
            "ids_unique": _check_ids(state),
            "groups_within_one_created_split": {"ok": not straddling_pools, "violations": len(straddling_pools)},
            "balance": balance_report,
        },
        "evaluation_splits": _evaluation_splits(state),
        "label_errors": {"count": len(state.label_errors), "examples": state.label_errors[:EXAMPLES]},
        "warnings": warnings_,
    }


def _totals(state: SplitState) -> dict[str, Any]:
    return {"records": len(state.records), "assigned": sum(state.kept),
            "dropped_exact_duplicates": len(state.duplicates.exact_dropped),
            "dropped_cross_split_duplicates": len(state.duplicates.cross_dropped),
            "per_split": dict(sorted(Counter(state.split_of[i] for i in state.kept_indices()).items()))}


def _counts(state: SplitState) -> dict[str, Any]:
    counts: dict = defaultdict(lambda: defaultdict(Counter))
    for i in state.kept_indices():
        counts[state.records[i].dataset][state.split_of[i]][state.strata[i]] += 1
    return {d: {s: dict(sorted(c.items())) for s, c in sorted(per.items())} for d, per in sorted(counts.items())}


def _images(state: SplitState, warnings_: list[str]) -> dict[str, Any]:
    records, hashes = state.records, state.hashes
    statuses = Counter(h.status for h in {r.image_path: hashes[i] for i, r in enumerate(records) if hashes[i]}.values())
    missing = sorted({r.image_path for i, r in enumerate(records) if hashes[i] and hashes[i].status != "ok"})
    if missing:
        warnings_.append(f"{len(missing)} images could not be hashed (missing, undecodable, not a regular file or "
                         f"outside releases.image_dirs), e.g. {missing[0]}")
    return {"records_with_image": sum(1 for r in records if r.image_path), "unique_images": sum(statuses.values()),
            "hashed": statuses.get("ok", 0), **{status: statuses.get(status, 0) for status in NOT_HASHED},
            "not_hashed_examples": missing[:EXAMPLES]}


def _groups(state: SplitState) -> dict[str, Any]:
    sizes = Counter(state.groups)
    largest = sorted(sizes.items(), key=lambda x: (-x[1], x[0]))[:EXAMPLES]
    return {"multi_member": sum(1 for n in sizes.values() if n > 1),
            "records_in_multi_member": sum(n for n in sizes.values() if n > 1),
            "largest": [{"size": n, "examples": _member_ids(state, g, kept_only=False)} for g, n in largest if n > 1],
            "links": state.links}


def _member_ids(state: SplitState, group: int, kept_only: bool) -> list[str]:
    return sorted(state.records[i].id for i, g in enumerate(state.groups)
                  if g == group and (state.kept[i] or not kept_only))[:EXAMPLES]


def _exact_duplicates(state: SplitState) -> dict[str, Any]:
    exact, ids = state.duplicates.exact_dropped, [r.id for r in state.records]
    return {"dropped": len(exact), "by_dataset_split": _pair_count(state, exact),
            "examples": [[ids[k], ids[d]] for d, k in sorted(exact.items())[:EXAMPLES]],
            "note": "[kept id, dropped id]: same dataset and split, image bytes, text and labels",
            "kept_in_official_files": _kept_duplicates(state, state.duplicates.exact_kept)}


def _kept_duplicates(state: SplitState, kept_duplicates: dict[int, int]) -> dict[str, Any]:
    ids = [r.id for r in state.records]
    return {"count": len(kept_duplicates), "by_dataset_split": _pair_count(state, kept_duplicates),
            "examples": [[ids[k], ids[d]] for d, k in sorted(kept_duplicates.items())[:EXAMPLES]],
            "note": "[first id, duplicate id] inside one official val/test file: kept, never dropped"}


def _cross_split_duplicates(state: SplitState) -> dict[str, Any]:
    crossing, dropped = state.duplicates.crossing, state.duplicates.cross_dropped
    official = state.duplicates.official_in_later_split
    return {"groups": len(crossing),
            "by_splits": dict(sorted(Counter("|".join(sorted(s, key=SPLITS.index))
                                             for s in crossing.values()).items())),
            "dropped_from_later_split": len(dropped),
            "dropped_examples": sorted(state.records[i].id for i in dropped)[:EXAMPLES],
            "official_kept_in_later_split": {
                "count": len(official), "by_dataset_split": _pair_count(state, official),
                "examples": sorted(state.records[i].id for i in official)[:EXAMPLES]},
            "examples": [_member_ids(state, g, kept_only=True) for g in sorted(crossing)[:EXAMPLES]]}


def _evaluation_splits(state: SplitState) -> dict[str, Any]:
    """Per dataset x val/test: official files (examples, kept, dropped as copies of another
    official file) and the carved/created examples beside them."""
    files: dict[tuple[str, str, str], Counter] = defaultdict(lambda: Counter(official_examples=0, kept=0,
                                                                             dropped_as_copies=0))
    others: Counter = Counter()
    for i, r in enumerate(state.records):
        split = state.split_of[i]
        if split not in EVAL_SPLITS:
            continue
        if state.pools[i] is None:
            counts = files[r.dataset, split, r.split]
            counts["official_examples"] += 1
            counts["kept" if state.kept[i] else "dropped_as_copies"] += 1
        elif state.kept[i]:
            others[r.dataset, split] += 1
    return evaluation_splits({cell: dict(c) for cell, c in files.items()}, others, "kept")


def eval_labeled(state: SplitState, binary_fields: tuple[str, ...], minimum: int,
                 warnings_: list[str]) -> dict[str, Any]:
    """Labelled examples per dataset, binary field of the taxonomy (what a plain expert learns) and
    evaluation split (val, test), for the fields a dataset annotates; parts under `minimum` are listed
    and warned about in one message."""
    counts: dict = defaultdict(lambda: defaultdict(Counter))   # dataset -> field -> split -> labelled
    for i in state.kept_indices():
        if state.labels[i] is not None:
            for name in binary_fields:
                if state.labels[i][name] is not None:
                    counts[state.records[i].dataset][name][state.split_of[i]] += 1
    below = [f"{d}/{s}/{name}: {per_field[name][s]}" for d, per_field in sorted(counts.items())
             for name in binary_fields if name in per_field for s in ("val", "test") if per_field[name][s] < minimum]
    if below:
        warnings_.append(f"{len(below)} evaluation parts have fewer than {minimum} labelled examples "
                         f"(split.min_eval_labeled); their per-dataset metrics mean little: " + ", ".join(below))
    return {"min_eval_labeled": minimum, "below": below,
            "counts": {d: {name: {s: per_field[name][s] for s in ("val", "test")} for name in sorted(per_field)}
                       for d, per_field in sorted(counts.items())}}


def _nested_count(state: SplitState, wanted: str) -> dict:
    out: dict = defaultdict(Counter)
    for i in state.kept_indices():
        if state.strata[i] == wanted:
            out[state.records[i].dataset][state.split_of[i]] += 1
    return {d: dict(sorted(c.items())) for d, c in sorted(out.items())}


def _pair_count(state: SplitState, indices) -> dict:
    return dict(sorted(Counter(f"{state.records[i].dataset}/{state.split_of[i]}" for i in indices).items()))


def _check_ids(state: SplitState) -> dict:
    seen = Counter(state.records[i].id for i in state.kept_indices())
    twice = sorted(i for i, n in seen.items() if n > 1)
    return {"ok": not twice, "violations": len(twice), "examples": twice[:EXAMPLES]}


def _pool_groups_straddling(state: SplitState) -> list[int]:
    """Groups whose created/carved members sit in more than one split (must be none)."""
    spans: dict[int, set[str]] = defaultdict(set)
    for i in state.kept_indices():
        if state.pools[i]:
            spans[state.groups[i]].add(state.split_of[i])
    return [g for g, s in spans.items() if len(s) > 1]


def _balance(state: SplitState, config, warnings_: list[str]) -> dict[str, Any]:
    """The balance check (stages.balance) on every created/carved pool's assignment."""
    tally: dict = defaultdict(lambda: defaultdict(Counter))   # pool -> split -> stratum -> n
    for i in state.kept_indices():
        if state.pools[i]:
            tally[f"{state.records[i].dataset}/{state.pools[i]}"][state.split_of[i]][state.strata[i]] += 1
    report, problems = balance.balance_check(tally, config.balance_tolerance, config.balance_min_examples)
    warnings_ += [f"{w}; content groups too large or too few examples to balance" for w in problems]
    return report



def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers `dvc metrics show` / `dvc exp show` compare (Step_3/metrics/split.json):
    examples per split, what was dropped, and whether each check passed."""
    totals, diagnostic = report["totals"], report.get("diagnostic", {})
    return {
        "records": totals["records"], "assigned": totals["assigned"],
        "splits": {**totals["per_split"], **({"diagnostic": diagnostic["examples"]} if diagnostic else {})},
        "dropped_exact_duplicates": totals["dropped_exact_duplicates"],
        "dropped_cross_split_duplicates": totals["dropped_cross_split_duplicates"],
        "cross_split_groups": report["cross_split_duplicates"]["groups"],
        "label_errors": report["label_errors"]["count"],
        "eval_parts_below_min_labeled": len(report["eval_labeled"]["below"]),
        "checks_ok": {name: check["ok"] for name, check in report["checks"].items()},
        "warnings": len(report["warnings"]),
    }
