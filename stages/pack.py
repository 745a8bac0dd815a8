"""Stage `pack` (Step 3 §6-7): manifest + OCR + taxonomy + splits -> WebDataset shards + stats.

    python -m stages.pack                      # defaults from params.yaml (ingest, split, pack)
    python Step_3/pack_examples.py --manifest Step_2/data_manifest.jsonl --ocr Step_2/ocr.jsonl \
        --output-dir Step_3/shards --label-taxonomy Step_3/label_taxonomy.json \
        --splits Step_3/splits.json --examples-limit 5000

The manifest is streamed in order; a Pool of workers decodes, resizes and encodes the images
(ordered imap, so the shards do not depend on the worker count) while the main process writes
the tars. Each example is packed, counted under one failure reason, or (no text and no image
file, with require_images false) counted as skipped; ids missing from splits.json are excluded.
Images are read only from under `image_dirs` (symlinks resolved; else failure `unsafe_path`).
Above `max_failure_rate` the stage exits non-zero and writes nothing: shards and stats are built
in temporary places and moved in only on success.
"""
from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import multiprocessing.pool
import signal
import threading
import time
import traceback
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


from stages import balance
from stages.common import (REPO_ROOT, atomic_dir, atomic_file, exit_on_interrupt, json_text, resolve_workers,
                           setup_logging)
from stages.config import Part, check_fields, parse
from stages.console import Progress
from stages.images import ImageError, ImageSpec, PreparedImage, prepare_image
from stages.records import (DIAGNOSTIC_SPLIT, EVAL_SPLITS, PACKED_SPLITS, SPLITS, ContractError, ManifestRecord,
                            evaluation_splits, load_ocr_index, official_split, read_manifest, resolve_image_path,
                            safe_key)
from stages.shards import ShardSetWriter
from stages.taxonomy import LabelError, Taxonomy, TaxonomyError
from stages.text import combine_text, has_content, normalize_lang, repair_unicode

CHUNKSIZE = 8            # tasks per Pool message: amortises IPC, small enough to keep cores busy
IN_FLIGHT_PER_WORKER = 4 * CHUNKSIZE


class PackError(Exception):
    """An input problem that stops the stage (bad manifest line, bad splits.json, ...)."""


class PackFailed(Exception):
    """Too many examples failed; carries the stats that would have been written."""

    def __init__(self, message: str, stats: dict[str, Any]):
        self.stats = stats
        super().__init__(message)


@dataclass(frozen=True)
class PackConfig:
    """The `pack` params group, plus the inputs other stages' groups name."""
    manifest: Path = field(metadata={"group": "ingest"})  # Step 2 manifest (JSONL)
    ocr: Path = field(metadata={"group": "ingest"})  # Step 2 OCR file (JSONL)
    output_dir: Path  # shard dir (replaced as a whole on success)
    stats: Path  # where to write the stats JSON
    label_taxonomy: Path = field(metadata={"group": "split"})  # the label taxonomy JSON
    splits: Path = field(metadata={"group": "split"})  # splits.json ({id: train|val|test})
    image: ImageSpec = field(default_factory=ImageSpec)
    examples_per_shard: int = field(default=5000, metadata={"min": 1})  # examples per tar
    ocr_min_conf: float = 0.5  # OCR lines below this confidence are dropped
    lang: str = "en"  # language tag for records without one
    require_images: bool = True  # false: an example whose image file is missing is packed text-only
    max_failure_rate: float = field(  # the stage fails (writing nothing) above this failure rate
        default=0.005, metadata={"min": 0.0, "max": 1.0})
    examples_limit: int | None = field(  # pilot runs: pack only the first N manifest records
        default=None, metadata={"min": 0})
    workers: int = field(default=0, metadata={"min": 0})  # image worker processes; 0 = all cores
    balance_tolerance: float = field(  # per-class share difference the balance check allows
        default=0.05, metadata={"group": "split"})
    image_root: Path = field(  # relative manifest image paths are relative to this
        default=REPO_ROOT, metadata={"cli_only": True})
    balance_min_examples: int = field(  # a created/carved pool part smaller than this is reported, not judged
        default=20, metadata={"group": "split"})
    official: dict[str, dict[str, str]] = field(  # which val/test files are the releases' own, which parts created/carved
        default_factory=dict, metadata={"group": "split"})
    image_dirs: tuple[Path, ...] | None = None  # images are read only from under these, symlinks resolved (None: image_root)
    max_text_chars: int | None = field(  # the OCR part and the caption are each cut to this many characters
        default=2000, metadata={"min": 1})

    def __post_init__(self):
        check_fields(self, "pack")


    @property
    def allowed_image_dirs(self) -> list[Path]:
        return [resolve_image_path(str(d), self.image_root) for d in self.image_dirs or (self.image_root,)]


PARTS = (Part("pack", PackConfig),)


@dataclass(frozen=True)
class Task:
    """One manifest record, prepared in the main process; workers add the image."""
    id: str
    dataset: str
    split: str | None = None          # None: not in splits.json -> excluded
    orig_split: str | None = None     # the release's split file (manifest `split`)
    key: str = ""
    text: str = ""
    meta: dict[str, Any] | None = None
    image_file: str | None = None     # resolved path, None for text-only records
    failure: tuple[str, str] | None = None
    ocr_lines_dropped: int = 0
    ocr_repeats_caption: bool = False
    text_truncated: bool = False      # a part was cut to max_text_chars
    pool: str | None = None           # "<dataset>/<carve|create>" for the balance check
    abort: str | None = None          # an input error: the stage stops with this message


@dataclass(frozen=True)
class Outcome:
    task: Task
    image: PreparedImage | None = None
    failure: tuple[str, str] | None = None
    text_only_fallback: bool = False  # image missing, packed text-only (require_images false)
    skip: tuple[str, str] | None = None  # not packed and not a failure (see SKIP_REASONS)

    @property
    def packed(self) -> bool:
        return self.task.split is not None and self.failure is None and self.skip is None


# ------------------------------------------------------------------ inputs


def load_splits(path: Path) -> dict[str, str]:
    try:
        splits = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(f"{path}: splits file not found (run the split stage first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PackError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(splits, dict):
        raise PackError(f"{path}: expected an object {{id: split}}, got {type(splits).__name__}")
    for example_id, split in splits.items():
        if split not in PACKED_SPLITS:
            raise PackError(f"{path}: id {example_id!r}: split must be one of {PACKED_SPLITS}, got {split!r}")
    return splits


def require_inputs(config: PackConfig) -> None:
    for name in ("manifest", "ocr", "label_taxonomy", "splits"):
        if not Path(getattr(config, name)).is_file():
            raise PackError(f"{getattr(config, name)}: {name} file not found")


def load_inputs(config: PackConfig) -> tuple[Taxonomy, dict, dict[str, str]]:
    require_inputs(config)
    try:
        taxonomy = Taxonomy.load(config.label_taxonomy)
        ocr_index = load_ocr_index(config.ocr)
    except (TaxonomyError, ContractError) as e:
        raise PackError(str(e)) from None
    except UnicodeDecodeError as e:
        raise PackError(f"{config.ocr}: not valid UTF-8 at byte {e.start}") from None
    return taxonomy, ocr_index, load_splits(config.splits)


# ------------------------------------------------------------------ per-example work


def make_task(record: ManifestRecord, config: PackConfig, taxonomy: Taxonomy, ocr_index: dict,
              splits: dict[str, str]) -> Task:
    """Text, labels and metadata of one record (cheap; runs in the main process)."""
    shown_id = repair_unicode(record.id)
    split = splits.get(record.id)
    task = functools.partial(Task, id=shown_id, dataset=record.dataset, orig_split=record.split)
    if split is None:
        return task()
    try:
        key = safe_key(record.id)
    except UnicodeEncodeError:
        return task(split=split, failure=("invalid_id", "id is not valid Unicode (lone surrogate)"))
    try:
        labels = taxonomy.map(record)
    except LabelError as e:
        return task(split=split, failure=("invalid_labels", str(e)))
    ocr = ocr_index.get(record.id)
    lang = normalize_lang(record.lang, config.lang)
    combined = combine_text(ocr.lines if ocr else (), record.text_raw, lang, config.ocr_min_conf, config.max_text_chars)
    failure = None
    if record.image_path is None and not has_content(combined.text):
        failure = ("empty_example", "no image and no text")
    meta = {"id": record.id, "key": key, "dataset": record.dataset, "orig_split": record.split,
            "split": split, "lang": lang, "labeled": labels.labeled, **labels.to_json()}
    image_file = None if record.image_path is None else str(resolve_image_path(record.image_path, config.image_root))
    return task(split=split, key=key, text=combined.text, meta=meta, image_file=image_file, failure=failure,
                ocr_lines_dropped=combined.ocr_lines_dropped, ocr_repeats_caption=combined.ocr_repeats_caption,
                text_truncated=combined.truncated, pool=balance.pool_of(record.dataset, record.split, config.official))


def make_tasks(config: PackConfig, taxonomy: Taxonomy, ocr_index: dict, splits: dict[str, str]) -> Iterator[Task]:
    """Tasks in manifest order. Runs in Pool.imap's feeder thread, so it never raises: an input
    error becomes a final `abort` task that the main thread turns into PackError in order."""
    try:
        records = read_manifest(config.manifest)
        if config.examples_limit is not None:
            records = evenly_spaced(records, config.examples_limit, count_lines(config.manifest))
        for record in records:
            yield make_task(record, config, taxonomy, ocr_index, splits)
    except ContractError as e:
        yield Task(id="", dataset="", abort=str(e))
    except UnicodeDecodeError as e:
        yield Task(id="", dataset="", abort=f"{config.manifest}: not valid UTF-8 at byte {e.start}")
    except Exception:
        yield Task(id="", dataset="", abort=f"unexpected error while reading {config.manifest}:\n{traceback.format_exc()}")


def evenly_spaced(items: Iterable, limit: int, total: int) -> Iterator:
    """`limit` of `total` items, evenly spaced and in order (all when limit >= total), so that a
    capped run still samples every dataset and split of the manifest, not just the first one."""
    for i, item in enumerate(items):
        if i * limit % total < limit:  # exactly `limit` of the `total` indices, the first one included
            yield item


def image_jobs(tasks: Iterable[Task], pending: deque) -> Iterator[str | None]:
    """What the workers get: the image path of each task that needs one (None for the rest).
    The task itself waits in `pending` (same order) so text and metadata never cross processes."""
    for task in tasks:
        pending.append(task)
        needs_image = not (task.abort or task.split is None or task.failure)
        yield task.image_file if needs_image else None


def prepare(image_file: str | None, spec: ImageSpec, image_dirs: list[Path]) -> PreparedImage | tuple[str, str] | None:
    """The worker's job: the prepared image, or (failure reason, detail); None when no image."""
    if image_file is None:
        return None
    try:
        return prepare_image(Path(image_file), spec, image_dirs)
    except ImageError as e:
        return e.reason, e.detail


def outcome_of(task: Task, result: PreparedImage | tuple[str, str] | None, require_images: bool) -> Outcome:
    if isinstance(result, PreparedImage):
        return Outcome(task=task, image=result)
    if result is None:
        return Outcome(task=task, failure=task.failure)
    reason, detail = result
    if reason == "missing_image" and not require_images:
        if has_content(task.text):
            return Outcome(task=task, text_only_fallback=True)
        return Outcome(task=task, skip=("no_text_no_image", "no text, and the image file does not exist"))
    return Outcome(task=task, failure=(reason, detail))


# ------------------------------------------------------------------ statistics

FAILURE_REASONS = ("missing_image", "not_a_file", "unreadable_image", "undecodable_image", "image_too_large",
                   "unsafe_path", "invalid_labels", "invalid_id", "empty_example")
# Not packed, yet not failures (outside the failure rate): with require_images false the user packs
# what has text; an example whose image file is missing and that has no text has nothing to pack.
SKIP_REASONS = ("no_text_no_image",)
CLASS_FIELDS = ("abuse_hate", "offensive", "target_type")
SHOWN_EXAMPLES = 5


def _examples_entry() -> dict[str, Any]:
    return {"count": 0, "examples": []}


def _count(entry: dict[str, Any], example_id: str, detail: str) -> None:
    entry["count"] += 1
    if len(entry["examples"]) < SHOWN_EXAMPLES:
        entry["examples"].append({"id": example_id, "detail": repair_unicode(detail)})


class PackStats:
    """Counts outcomes in manifest order. Besides counters it keeps each packed key's split and
    each packed image's 8-byte digest for the duplicate check: small per-example entries, like
    the OCR index, and no example content."""

    def __init__(self, config: PackConfig):
        self.config = config
        self.total = self.excluded = self.ocr_lines_dropped = self.ocr_repeats = 0
        self.failures = {reason: _examples_entry() for reason in FAILURE_REASONS}
        self.skipped = {reason: _examples_entry() for reason in SKIP_REASONS}
        self.fallback = _examples_entry()
        self.truncated = _examples_entry()
        self.pools: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        self.splits = {split: Counter(examples=0, with_image=0, text_only=0) for split in PACKED_SPLITS}
        self.classes = {split: {f: Counter() for f in CLASS_FIELDS + ("target_group",)} for split in PACKED_SPLITS}
        self.dataset_classes: dict[str, dict] = defaultdict(
            lambda: {s: {f: Counter() for f in CLASS_FIELDS} for s in PACKED_SPLITS})
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
        for name in CLASS_FIELDS:
            cls = "unlabeled" if labels[name] is None else str(labels[name])
            self.classes[split][name][cls] += 1
        if task.pool:
            self.pools[task.pool][split][balance.stratum(task.meta["labeled"], labels["abuse_hate"],
                                                         labels["offensive"])] += 1
        groups = labels["target_group"]
        self.classes[split]["target_group"].update(["unlabeled"] if groups is None else groups or ["(none)"])
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
            "balance": check,
            "image": {"format": config.image.format, "size": [config.image.size, config.image.size],
                      "resize": config.image.resize, "max_pixels": config.image.max_pixels,
                      "jpeg_quality": config.image.jpeg_quality if config.image.format == "jpg" else None,
                      "source_modes": dict(self.source_modes)},
            "text": {"ocr_min_conf": config.ocr_min_conf, "default_lang": config.lang, "langs": dict(self.langs),
                     "ocr_lines_dropped_low_conf": self.ocr_lines_dropped,
                     "ocr_dropped_as_caption_repeat": self.ocr_repeats,
                     "max_text_chars": config.max_text_chars, "truncated": self.truncated},
            "examples_per_shard": config.examples_per_shard,
            "examples_limit": config.examples_limit,
            "require_images": config.require_images,
        }


# ------------------------------------------------------------------ ordered, bounded parallel map


class Window:
    """Caps the tasks in flight. Pool.imap's feeder thread would otherwise read the whole
    manifest ahead of the workers, and memory would grow with the dataset."""

    def __init__(self, size: int):
        self._slots = threading.Semaphore(size)
        self._closed = threading.Event()

    def gate(self, items: Iterable) -> Iterator:
        for item in items:
            while not self._slots.acquire(timeout=0.1):
                if self._closed.is_set():
                    return
            if self._closed.is_set():
                return
            yield item

    def release(self) -> None:
        self._slots.release()

    def close(self) -> None:
        self._closed.set()


def _worker_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the main process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Pool.terminate() stops workers with SIGTERM


@contextlib.contextmanager
def worker_pool(workers: int, window: Window) -> Iterator[multiprocessing.pool.Pool | None]:
    """A Pool for the image work, or None for one worker (the work then runs inline)."""
    if workers == 1:
        yield None
        return
    pool = multiprocessing.Pool(workers, initializer=_worker_signals)
    try:
        yield pool
    finally:
        window.close()  # unblock the feeder thread before terminate() joins it
        pool.terminate()
        pool.join()


# ------------------------------------------------------------------ the stage


def pack(config: PackConfig, advance: Callable[[], None] | None = None) -> dict[str, Any]:
    """Pack the manifest into shards; returns the stats (also written to config.stats).

    Raises PackError on bad inputs and PackFailed above the failure gate; in both cases neither
    the shard dir nor the stats file is touched.
    """
    workers = resolve_workers(config.workers)
    window = Window(workers * IN_FLIGHT_PER_WORKER)
    work = functools.partial(prepare, spec=config.image, image_dirs=config.allowed_image_dirs)
    stats, pending = PackStats(config), deque()
    with worker_pool(workers, window) as pool:  # forks before the inputs are loaded: lean workers
        jobs = image_jobs(window.gate(make_tasks(config, *load_inputs(config))), pending)
        results = pool.imap(work, jobs, chunksize=CHUNKSIZE) if pool else map(work, jobs)
        # exits run in reverse: the shard dir is swapped in before stats.json, so a kill between
        # the two never leaves new stats beside old shards
        with atomic_file(config.stats) as stats_tmp, atomic_dir(config.output_dir) as tmp_dir, \
                ShardSetWriter(tmp_dir, config.examples_per_shard) as writer:
            for result in results:
                window.release()
                outcome = outcome_of(pending.popleft(), result, config.require_images)
                if outcome.task.abort:
                    raise PackError(outcome.task.abort)
                if outcome.packed:
                    _write(writer, outcome, config.image.format)
                stats.add(outcome)
                if advance:
                    advance()
            writer.close()
            summary = stats.to_json(writer.shard_counts())
            if summary["failure_rate"] > config.max_failure_rate:
                raise PackFailed(failure_message(summary, config.max_failure_rate), summary)
            stats_tmp.write_text(json_text(summary), encoding="utf-8")
    return summary


def _write(writer: ShardSetWriter, outcome: Outcome, image_ext: str) -> None:
    task = outcome.task
    has_image = outcome.image is not None
    meta = {**task.meta, "has_image": has_image}
    writer.write(task.split, task.key, task.text, meta,
                 image=outcome.image.data if has_image else None, image_ext=image_ext if has_image else None)


def failure_message(summary: dict[str, Any], max_rate: float) -> str:
    reasons = sorted(((r["count"], name) for name, r in summary["failures"].items() if r["count"]), reverse=True)
    lines = [f"pack failed: failure rate {summary['failure_rate']:.2%} > max {max_rate:.2%} "
             f"({summary['failed_examples']} of {summary['total_examples'] - summary['excluded_examples'] - summary['skipped_examples']} "
             "examples); no outputs written. Top reasons:"]
    for count, name in reasons[:5]:
        shown = ", ".join(f"{e['id']} ({e['detail']})" for e in summary["failures"][name]["examples"][:3])
        lines.append(f"  {name}: {count}  e.g. {shown}")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def count_lines(path: Path) -> int:
    """Non-empty lines of the manifest, for the progress bar's total."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def print_summary(summary: dict[str, Any], console) -> None:
    from rich.table import Table

    table = Table(title="Step 3 pack")
    for column in ("split", "examples", "with image", "text-only", "abuse_hate 0/1/?", "offensive 0/1/?", "shards"):
        table.add_column(column, justify="right")
    for split, s in summary["splits"].items():
        ah, off = s["classes"]["abuse_hate"], s["classes"]["offensive"]
        table.add_row(split, str(s["examples"]), str(s["with_image"]), str(s["text_only"]),
                      f"{ah.get('0', 0)}/{ah.get('1', 0)}/{ah.get('unlabeled', 0)}",
                      f"{off.get('0', 0)}/{off.get('1', 0)}/{off.get('unlabeled', 0)}",
                      f"{s['shards']['image']}+{s['shards']['textonly']}")
    if DIAGNOSTIC_SPLIT in summary:
        d = summary[DIAGNOSTIC_SPLIT]
        table.add_row(f"{DIAGNOSTIC_SPLIT} (eval only)", str(d["examples"]), str(d["with_image"]), str(d["text_only"]),
                      *(f"{c.get('0', 0)}/{c.get('1', 0)}/{c.get('unlabeled', 0)}"
                        for c in (d["classes"]["abuse_hate"], d["classes"]["offensive"])),
                      f"{d['shards']['image']}+{d['shards']['textonly']}")
    console.print(table)
    failures = Table(title="Failures (counted, not packed)")
    for column in ("reason", "count", "e.g."):
        failures.add_column(column)
    for reason, entry in summary["failures"].items():
        if entry["count"]:
            failures.add_row(reason, str(entry["count"]), ", ".join(e["id"] for e in entry["examples"][:3]))
    for reason, entry in summary["skipped"].items():
        if entry["count"]:
            failures.add_row(f"{reason} (skipped, not a failure)", str(entry["count"]),
                             ", ".join(e["id"] for e in entry["examples"][:3]))
    if failures.row_count:
        console.print(failures)
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


def describe_test_split(test: dict[str, Any]) -> str:
    official = f"{test['packed']}/{test['official_examples']} {'complete' if test['complete'] else 'INCOMPLETE'}"
    if test["official"]:
        return official
    carved = f"{test['carved_or_created']} carved/created"
    return f"{official} + {carved}" if test["official_examples"] else carved


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(f"pack: stopped by signal {signum}; no outputs written")


def main(argv: list[str] | None = None) -> None:
    (config,), args = parse("pack", __doc__.split("\n\n")[0], PARTS, argv)
    setup_logging(args.verbose)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # unwind, so temporary outputs are removed
    try:
        with exit_on_interrupt("pack"):
            run(config)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(config: PackConfig) -> None:
    """main() after option parsing: progress bar, summary table, speed."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        require_inputs(config)
    except PackError as e:
        raise SystemExit(f"pack: {e}") from None
    total = count_lines(config.manifest)
    if config.examples_limit is not None:
        total = min(total, config.examples_limit)
    start = time.perf_counter()
    try:
        with Progress("pack", total, console=console) as progress:
            summary = pack(config, progress.advance)
    except PackError as e:
        raise SystemExit(f"pack: {e}") from None
    except PackFailed as e:
        print_summary(e.stats, console)
        raise SystemExit(str(e)) from None
    seconds = time.perf_counter() - start
    print_summary(summary, console)
    console.print(f"processed {summary['total_examples']} manifest records in {seconds:.1f} s "
                  f"({summary['total_examples'] / max(seconds, 1e-9):.1f} examples/s, "
                  f"{resolve_workers(config.workers)} workers) -> {config.output_dir}, {config.stats}")


if __name__ == "__main__":
    main()
