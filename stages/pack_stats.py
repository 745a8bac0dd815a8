"""pack's statistics (Step_3/stats.json) and its console summary.

`PackStats` counts every outcome in packing order (pack's seeded shuffle): packed per split and dataset, failures and
skips with a few example ids, classes, the balance check, official evaluation files' completeness,
cross-split duplicates.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from rich.console import Console

from stages import balance, console as stage_console
from stages.records import DIAGNOSTIC_SPLIT, EVAL_SPLITS, PACKED_SPLITS, SPLITS, evaluation_splits, official_split
from stages.text import repair_unicode

if TYPE_CHECKING:
    from stages.pack import Outcome, PackConfig
    from stages.taxonomy import Taxonomy

FAILURE_REASONS = ("missing_image", "not_a_file", "unreadable_image", "undecodable_image", "image_too_large",
                   "unsafe_path", "invalid_labels", "invalid_id", "empty_example")
# Not packed, yet not failures (outside the failure rate): with require_images false the user packs
# what has text; an example whose image file is missing and that has no text has nothing to pack.
SKIP_REASONS = ("no_text_no_image",)
SHOWN_EXAMPLES = 5


def _examples_entry() -> dict[str, Any]:
    return {"count": 0, "examples": []}


def _count(entry: dict[str, Any], example_id: str, detail: str) -> None:
    entry["count"] += 1
    if len(entry["examples"]) < SHOWN_EXAMPLES:
        entry["examples"].append({"id": example_id, "detail": repair_unicode(detail)})


class PackStats:
    """Counts outcomes in packing order (the few example ids kept per reason are the first met).
    Besides counters it keeps each packed key's split and each packed image's 8-byte digest for the
    duplicate check: small per-example entries, like the OCR index, and no example content.
    Classes are counted per unified field of the taxonomy: a binary or categorical field's values,
    each name of a multilabel field's lists."""

    def __init__(self, config: PackConfig, taxonomy: Taxonomy):
        self.config = config
        self.group_fields = taxonomy.fields_of_type("multilabel")
        self.class_fields = tuple(name for name in taxonomy.fields if name not in self.group_fields)
        self.stratify_on = taxonomy.stratify_on
        self.total = self.excluded = self.ocr_lines_dropped = self.ocr_repeats = 0
        self.failures = {reason: _examples_entry() for reason in FAILURE_REASONS}
        self.skipped = {reason: _examples_entry() for reason in SKIP_REASONS}
        self.fallback = _examples_entry()
        self.truncated = _examples_entry()
        self.pools: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.splits = {split: Counter(examples=0, with_image=0, text_only=0) for split in PACKED_SPLITS}
        self.classes = {split: {f: Counter() for f in self.class_fields + self.group_fields} for split in PACKED_SPLITS}
        self.datasets: dict[str, Counter] = defaultdict(Counter)
        self.key_split: dict[str, str] = {}
        self.image_owner: dict[bytes, tuple[str, str]] = {}
        self.duplicates = {"same_id": 0, "same_image": 0, "same_image_within_split": 0, "examples": []}
        self.source_modes: Counter = Counter()
        self.langs: Counter = Counter()
        self.official_files: dict[tuple[str, str, str], Counter] = defaultdict(
            lambda: Counter(official_examples=0, packed=0, failed=0, excluded=0, packed_in_other_split=0))
        self.carved_or_created: Counter = Counter()   # (dataset, val|test) -> packed, not from an official file

    def add(self, outcome: Outcome) -> None:
        task = outcome.task
        self.total += 1
        per_dataset = self.datasets[task.dataset]
        if task.split is None:
            self.excluded += 1
            per_dataset["excluded"] += 1
        elif outcome.failure:
            reason, detail = outcome.failure
            _count(self.failures.setdefault(reason, _examples_entry()), task.id, detail)
            per_dataset["failed"] += 1
        elif outcome.skip:
            reason, detail = outcome.skip
            _count(self.skipped[reason], task.id, detail)
            per_dataset["skipped"] += 1
        else:
            self._add_packed(outcome)
        self._count_official(outcome)

    def _count_official(self, outcome: Outcome) -> None:
        """Where each example of an official val/test file went: the completeness check."""
        task = outcome.task
        target = official_split(self.config.official, task.dataset, task.orig_split)
        if target not in EVAL_SPLITS:
            if outcome.packed and task.split in EVAL_SPLITS:
                self.carved_or_created[task.dataset, task.split] += 1
            return
        counts = self.official_files[task.dataset, target, task.orig_split]
        counts["official_examples"] += 1
        if task.split is None:
            counts["excluded"] += 1
        elif outcome.failure:
            counts["failed"] += 1
        else:
            counts["packed" if task.split == target else "packed_in_other_split"] += 1

    def _add_packed(self, outcome: Outcome) -> None:
        task, split = outcome.task, outcome.task.split
        self.splits[split]["examples"] += 1
        self.datasets[task.dataset][split] += 1
        if outcome.image is not None:
            self.splits[split]["with_image"] += 1
            self.source_modes[outcome.image.source_mode] += 1
            self._check_image(outcome.image.digest, split, task.id)
        else:
            self.splits[split]["text_only"] += 1
            self.datasets[task.dataset]["text_only"] += 1
        if outcome.text_only_fallback:
            _count(self.fallback, task.id, "image file missing; packed text-only")
        if task.text_truncated:
            _count(self.truncated, task.id, f"text cut to {self.config.max_text_chars} characters per part")
        if self.key_split.setdefault(task.key, split) != split:
            self.duplicates["same_id"] += 1
        labels = task.meta["labels"]
        for name in self.class_fields:
            cls = "unlabeled" if labels[name] is None else str(labels[name])
            self.classes[split][name][cls] += 1
        for name in self.group_fields:
            groups = labels[name]
            self.classes[split][name].update(["unlabeled"] if groups is None else groups or ["(none)"])
        if task.pool:
            self.pools[task.pool][split][balance.stratum(task.meta["labeled"], labels, self.stratify_on)] += 1
        self.langs[task.meta["lang"]] += 1
        self.ocr_lines_dropped += task.ocr_lines_dropped
        self.ocr_repeats += task.ocr_repeats_caption

    def _check_image(self, digest: bytes, split: str, example_id: str) -> None:
        owner = self.image_owner.setdefault(digest, (split, example_id))
        if owner == (split, example_id):
            return
        if owner[0] == split:
            self.duplicates["same_image_within_split"] += 1
            return
        self.duplicates["same_image"] += 1
        if len(self.duplicates["examples"]) < SHOWN_EXAMPLES:
            self.duplicates["examples"].append({"kind": "same_image", "ids": [owner[1], example_id],
                                                "splits": [owner[0], split]})

    def _diagnostic_json(self, shard_counts: dict[str, dict[str, int]]) -> dict[str, Any]:
        """The evaluation-only split, counted apart from train/val/test (absent when empty)."""
        counts = self.splits[DIAGNOSTIC_SPLIT]
        if not counts["examples"]:
            return {}
        datasets = {name: c[DIAGNOSTIC_SPLIT] for name, c in sorted(self.datasets.items()) if c[DIAGNOSTIC_SPLIT]}
        return {DIAGNOSTIC_SPLIT: {**counts, "shards": shard_counts[DIAGNOSTIC_SPLIT], "datasets": datasets,
                                   "classes": {f: dict(c) for f, c in self.classes[DIAGNOSTIC_SPLIT].items()},
                                   "note": "evaluation only; not in `splits`, the balance check or training"}}

    def to_json(self, shard_counts: dict[str, dict[str, int]]) -> dict[str, Any]:
        config = self.config
        failed = sum(entry["count"] for entry in self.failures.values())
        skipped = sum(entry["count"] for entry in self.skipped.values())
        packed = sum(s["examples"] for s in self.splits.values())
        to_pack = self.total - self.excluded - skipped
        check, _ = balance.balance_check(self.pools, config.balance_tolerance, config.balance_min_examples)
        return {
            "total_examples": self.total,
            "packed_examples": packed,
            "failed_examples": failed,
            "failure_rate": round(failed / to_pack, 6) if to_pack else 0.0,
            "excluded_examples": self.excluded,
            "skipped_examples": skipped,
            "skipped": self.skipped,
            "image_packed": sum(s["with_image"] for s in self.splits.values()),
            "text_only_packed": sum(s["text_only"] for s in self.splits.values()),
            "missing_image_packed_text_only": self.fallback,
            "failures": self.failures,
            "splits": {split: {**self.splits[split], "shards": shard_counts[split],
                               "classes": {f: dict(c) for f, c in self.classes[split].items()}} for split in SPLITS},
            "datasets": {name: {k: counts[k] for k in (*SPLITS, "text_only", "failed", "skipped", "excluded")}
                         | ({DIAGNOSTIC_SPLIT: counts[DIAGNOSTIC_SPLIT]} if counts[DIAGNOSTIC_SPLIT] else {})
                         for name, counts in sorted(self.datasets.items())},
            "evaluation_splits": evaluation_splits({cell: dict(c) for cell, c in self.official_files.items()},
                                                   self.carved_or_created, "packed"),
            **self._diagnostic_json(shard_counts),
            "duplicates_across_splits": self.duplicates,
            "stratify_on": list(self.stratify_on),
            "balance": check,
            "image": {"format": config.image.image_format, "size": [config.image.image_size, config.image.image_size],
                      "resize": config.image.resize, "max_pixels": config.image.max_image_pixels,
                      "jpeg_quality": config.image.jpeg_quality if config.image.image_format == "jpg" else None,
                      "source_modes": dict(self.source_modes)},
            "text": {"ocr_min_conf": config.ocr_min_conf, "default_lang": config.lang, "langs": dict(self.langs),
                     "ocr_lines_dropped_low_conf": self.ocr_lines_dropped,
                     "ocr_dropped_as_caption_repeat": self.ocr_repeats,
                     "max_text_chars": config.max_text_chars, "truncated": self.truncated},
            "examples_per_shard": config.examples_per_shard,
            "examples_limit": config.examples_limit,
            "require_images": config.require_images,
        }



HEADLINE_COUNTS = ("total_examples", "packed_examples", "failed_examples", "failure_rate", "excluded_examples",
                   "skipped_examples", "image_packed", "text_only_packed")


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The few numbers `dvc metrics show` / `dvc exp show` compare (Step_3/metrics/pack.json):
    the totals, examples and shards per split, the balance check, cross-split duplicates."""
    splits = dict(summary["splits"])
    if DIAGNOSTIC_SPLIT in summary:
        splits[DIAGNOSTIC_SPLIT] = summary[DIAGNOSTIC_SPLIT]
    duplicates = summary["duplicates_across_splits"]
    return {**{key: summary[key] for key in HEADLINE_COUNTS},
            "splits": {name: {"examples": s["examples"], "shards": s["shards"]["image"] + s["shards"]["textonly"]}
                       for name, s in splits.items()},
            "balance_ok": summary["balance"]["ok"],
            "duplicates_across_splits": {"same_id": duplicates["same_id"], "same_image": duplicates["same_image"]},
            "texts_truncated": summary["text"]["truncated"]["count"]}


def failure_message(summary: dict[str, Any], max_rate: float) -> str:
    reasons = sorted(((r["count"], name) for name, r in summary["failures"].items() if r["count"]), reverse=True)
    attempted = summary['total_examples'] - summary['excluded_examples'] - summary['skipped_examples']
    top = []
    for count, name in reasons[:5]:
        shown = ", ".join(f"{e['id']} ({e['detail']})" for e in summary["failures"][name]["examples"][:3])
        top.append(f"{name}: {count} e.g. {shown}")
    return (f"failure rate {summary['failure_rate']:.2%} > max {max_rate:.2%} ({summary['failed_examples']} of "
            f"{attempted} examples); no outputs written; top reasons: {'; '.join(top)}")



def print_summary(summary: dict[str, Any], console: Console) -> None:
    fields = summary["stratify_on"]   # the headline classes: the ones splits are stratified on
    rows = [(split, *_split_cells(s, fields)) for split, s in summary["splits"].items()]
    if DIAGNOSTIC_SPLIT in summary:
        rows.append((f"{DIAGNOSTIC_SPLIT} (eval only)", *_split_cells(summary[DIAGNOSTIC_SPLIT], fields)))
    stage_console.summary("Step 3 pack", ("split", "examples", "with image", "text-only",
                                          *(f"{field} 0/1/?" for field in fields), "shards"),
                          rows, labels=0, console=console)
    failures = [(name, entry["count"], ", ".join(e["id"] for e in entry["examples"][:3]))
                for name, entry in summary["failures"].items() if entry["count"]]
    failures += [(f"{name} (skipped, not a failure)", entry["count"], ", ".join(e["id"] for e in entry["examples"][:3]))
                 for name, entry in summary["skipped"].items() if entry["count"]]
    if failures:
        stage_console.summary("Failures (counted, not packed)", ("reason", "count", "e.g."), failures, labels=3,
                              console=console)
    image, dup = summary["image"], summary["duplicates_across_splits"]
    console.print(
        f"total {summary['total_examples']}  packed {summary['packed_examples']}  failed {summary['failed_examples']} "
        f"(rate {summary['failure_rate']:.3%})  excluded {summary['excluded_examples']}  "
        f"text-only {summary['text_only_packed']} (of which image missing: "
        f"{summary['missing_image_packed_text_only']['count']})  skipped {summary['skipped_examples']}  "
        f"text cut to {summary['text']['max_text_chars']} chars: {summary['text']['truncated']['count']}\n"
        f"images: {image['format']} {image['size'][0]}x{image['size'][1]} ({image['resize']})  "
        f"cross-split duplicates: same id {dup['same_id']}, same image {dup['same_image']}")
    console.print(balance.balance_line(summary["balance"]), soft_wrap=True)
    console.print("test splits (packed/official): " + ", ".join(
        f"{dataset} {describe_test_split(splits['test'])}" for dataset, splits in summary["evaluation_splits"].items()
        if "test" in splits))


def _split_cells(s: dict[str, Any], fields: list[str]) -> tuple:
    classes = [s["classes"][field] for field in fields]
    return (s["examples"], s["with_image"], s["text_only"],
            *(f"{c.get('0', 0)}/{c.get('1', 0)}/{c.get('unlabeled', 0)}" for c in classes),
            f"{s['shards']['image']}+{s['shards']['textonly']}")


def describe_test_split(test: dict[str, Any]) -> str:
    official = f"{test['packed']}/{test['official_examples']} {'complete' if test['complete'] else 'INCOMPLETE'}"
    if test["official"]:
        return official
    carved = f"{test['carved_or_created']} carved/created"
    return f"{official} + {carved}" if test["official_examples"] else carved

