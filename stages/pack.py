"""Stage `pack` (Step 3 §6-7): manifest + OCR + taxonomy + splits -> WebDataset shards + stats.

    python -m stages.pack --manifest Step_2/data_manifest.jsonl --ocr Step_2/ocr.jsonl \
        --label-taxonomy Step_3/label_taxonomy.json --splits Step_3/splits.json   # the rest from params.yaml
    python Step_3/pack_examples.py --manifest Step_2/data_manifest.jsonl --ocr Step_2/ocr.jsonl \
        --output-dir Step_3/shards --label-taxonomy Step_3/label_taxonomy.json \
        --splits Step_3/splits.json --examples-limit 5000

The manifest is validated once, then read record by record in a seeded shuffled order (`seed`),
so every split's shards mix the datasets; a Pool of workers decodes, resizes and encodes the
images (ordered imap, so the shards do not depend on the worker count) while the main process
writes the tars. Each example is packed, counted under one failure reason, or (no text and no image
file, with require_images false) counted as skipped; ids missing from splits.json are excluded.
Images are read only from under `image_dirs` (symlinks resolved; else failure `unsafe_path`).
Above `max_failure_rate` the stage exits non-zero and writes nothing: shards and stats are built
in temporary places and moved in only on success.
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import contextlib
import functools
import json
import random
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from stages import balance
from stages.common import REPO_ROOT, atomic_dir, atomic_file, json_text, resolve_workers
from stages.config import Part, check_fields, knob, parse, unless_given
from stages.console import Progress, setup_logging
from stages.errors import GateError, InputError, Interrupted
from stages.images import ImageError, ImageSpec, PreparedImage, prepare_image
from stages.pack_stats import PackStats, failure_message, headline, print_summary
from stages.parallel import OrderedPool
from stages.records import (PACKED_SPLITS, ContractError, ManifestRecord, image_folders, load_ocr_index,
                            manifest_positions, read_manifest_at, resolve_image_path, safe_key)
from stages.shards import ShardSetWriter
from stages.taxonomy import LabelError, Taxonomy, TaxonomyError
from stages.text import combine_text, has_content, normalize_lang, repair_unicode


class PackError(InputError):
    """An input problem that stops the stage (bad manifest line, bad splits.json, ...)."""


class PackFailed(GateError):
    """Too many examples failed; carries the stats that would have been written."""

    def __init__(self, message: str, stats: dict[str, Any]):
        self.stats = stats
        super().__init__(message)


@dataclass(frozen=True)
class PackConfig:
    """The `pack` params group; the inputs other stages write come as flags (dvc.yaml's cmd)."""
    manifest: Path = knob(help="the Step 2 manifest (JSONL)", cli_only=True)
    ocr: Path = knob(help="the Step 2 OCR file (JSONL)", cli_only=True)
    output_dir: Path = knob(help="shard dir (replaced as a whole on success, when absent, empty or pack's own)")
    stats: Path = knob(help="where to write the stats JSON (every count, failure and check)")
    label_taxonomy: Path = knob(help="the label taxonomy JSON", cli_only=True)
    splits: Path = knob(help="splits.json ({id: train|val|test})", cli_only=True)
    image: ImageSpec = knob(factory=ImageSpec, help="how images are prepared (its fields are `pack` keys)")
    examples_per_shard: int = knob(5000, "examples per tar", min=1)
    ocr_min_conf: float = knob(0.5, "OCR lines below this confidence are dropped", min=0.0, max=1.0)
    lang: str = knob("en", "language tag for records without one")
    require_images: bool = knob(True, "false: an example whose image file is missing is packed text-only")
    max_failure_rate: float = knob(0.005, "the stage fails (writing nothing) above this failure rate, in [0, 1)",
                                   min=0.0, below=1.0)
    examples_limit: int | None = knob(None, "quick runs: pack only N manifest records, evenly spaced (null: all)",
                                      min=1)
    seed: int = knob(0, "the seeded shuffle of the example order (every split's shards mix the datasets)")
    workers: int = knob(0, "image worker processes; 0 = all cores", min=0)
    balance_tolerance: float = knob(balance.DEFAULT_TOLERANCE, "per-class share difference the balance check allows "
                                    "(split.balance_tolerance)", cli_only=True, **balance.TOLERANCE_LIMITS)
    image_root: Path = knob(REPO_ROOT, "relative manifest image paths are relative to this", cli_only=True)
    balance_min_examples: int = knob(balance.DEFAULT_MIN_EXAMPLES, "a created/carved pool part smaller than this "
                                     "is reported, not judged (split.balance_min_examples)", cli_only=True, min=0)
    official: dict[str, dict[str, str]] = knob(
        factory=dict, help="which val/test files are the releases' own, which parts created/carved", group="releases")
    image_dirs: tuple[Path, ...] | None = knob(
        None, "images are read only from under these, symlinks resolved (None: image_root)", group="releases")
    max_text_chars: int | None = knob(2000, "the OCR part and the caption are each cut to this many characters",
                                      min=1)
    metrics: Path | None = knob(None, "the headline counts (the DVC metric); null: none")

    def __post_init__(self):
        check_fields(self, "pack")

    @property
    def allowed_image_dirs(self) -> list[Path]:
        return image_folders(self.image_dirs, self.image_root)

    def inputs(self) -> list[Path]:
        """What the outputs may not replace: the input files and the image folders."""
        return [self.manifest, self.ocr, self.label_taxonomy, self.splits, *self.allowed_image_dirs]


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
        for record in read_manifest_at(config.manifest, packing_order(config)):
            yield make_task(record, config, taxonomy, ocr_index, splits)
    except ContractError as e:
        yield Task(id="", dataset="", abort=str(e))
    except UnicodeDecodeError as e:
        yield Task(id="", dataset="", abort=f"{config.manifest}: not valid UTF-8 at byte {e.start}")
    except Exception:
        yield Task(id="", dataset="",
                   abort=f"unexpected error while reading {config.manifest}:\n{traceback.format_exc()}")


def packing_order(config: PackConfig) -> list[tuple[int, int]]:
    """The manifest positions to pack (all, or examples_limit of them evenly spaced), in an order
    shuffled with `seed`: the manifest lists one dataset after another, and so would every split's
    shards; shuffled, any reader of the shards in order meets the datasets mixed."""
    positions = manifest_positions(config.manifest)
    if config.examples_limit is not None:
        positions = list(evenly_spaced(positions, config.examples_limit, len(positions)))
    random.Random(config.seed).shuffle(positions)
    return positions


def evenly_spaced(items: Iterable, limit: int, total: int) -> Iterator:
    """`limit` of `total` items, evenly spaced and in order (all when limit >= total), so that a
    capped run still samples every dataset and split of the manifest, not just the first one."""
    for i, item in enumerate(items):
        if i * limit % total < limit:  # exactly `limit` of the `total` indices, the first one included
            yield item


def image_job(task: Task) -> str | None:
    """What a worker gets: the image path of a task that needs one (None for the rest); text and
    metadata never cross processes."""
    return None if task.abort or task.split is None or task.failure else task.image_file


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


# ------------------------------------------------------------------ the stage


def pack(config: PackConfig, advance: Callable[[], None] | None = None) -> dict[str, Any]:
    """Pack the manifest into shards; returns the stats (also written to config.stats).

    Raises PackError on bad inputs and PackFailed above the failure gate; in both cases neither
    the shard dir nor the stats file is touched.
    """
    work = functools.partial(prepare, spec=config.image, image_dirs=config.allowed_image_dirs)
    with OrderedPool(config.workers) as pool:  # forks before the inputs are loaded: lean workers
        taxonomy, ocr_index, splits = load_inputs(config)
        stats = PackStats(config, taxonomy)
        results = pool.map(work, make_tasks(config, taxonomy, ocr_index, splits), job=image_job)
        # exits run in reverse: the shard dir is swapped in before stats.json and the metrics, so a
        # kill between them never leaves new stats beside old shards
        inputs = config.inputs()
        with contextlib.ExitStack() as outputs:
            metrics_tmp = outputs.enter_context(atomic_file(config.metrics, inputs)) if config.metrics else None
            stats_tmp = outputs.enter_context(atomic_file(config.stats, inputs))
            tmp_dir = outputs.enter_context(atomic_dir(config.output_dir, "pack", inputs))
            writer = outputs.enter_context(ShardSetWriter(tmp_dir, config.examples_per_shard))
            for task, result in results:
                outcome = outcome_of(task, result, config.require_images)
                if outcome.task.abort:
                    raise PackError(outcome.task.abort)
                if outcome.packed:
                    _write(writer, outcome, config.image.image_format)
                stats.add(outcome)
                if advance:
                    advance()
            writer.close()
            summary = stats.to_json(writer.shard_counts())
            if summary["failure_rate"] > config.max_failure_rate:
                raise PackFailed(failure_message(summary, config.max_failure_rate), summary)
            stats_tmp.write_text(json_text(summary), encoding="utf-8")
            if metrics_tmp:
                metrics_tmp.write_text(json_text(headline(summary)), encoding="utf-8")
    return summary


def _write(writer: ShardSetWriter, outcome: Outcome, image_ext: str) -> None:
    task = outcome.task
    has_image = outcome.image is not None
    meta = {**task.meta, "has_image": has_image}
    writer.write(task.split, task.key, task.text, meta,
                 image=outcome.image.data if has_image else None, image_ext=image_ext if has_image else None)


# ------------------------------------------------------------------ command line


def count_lines(path: Path) -> int:
    """Non-empty lines of the manifest, for the progress bar's total."""
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _interrupt_on_sigterm(signum, frame) -> None:
    raise Interrupted(f" (signal {signum})")


def main(argv: list[str] | None = None) -> None:
    (config,), args = parse("pack", __doc__.split("\n\n")[0], PARTS, argv)
    config = unless_given(config, args, "pack", "stats", "metrics")
    setup_logging(args.verbose)
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)  # unwind, so temporary outputs are removed
    try:
        run(config)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(config: PackConfig) -> None:
    """main() after option parsing: progress bar, summary table, speed."""
    from rich.console import Console

    console = Console(stderr=True)
    require_inputs(config)
    total = count_lines(config.manifest)
    if config.examples_limit is not None:
        total = min(total, config.examples_limit)
    start = time.perf_counter()
    try:
        with Progress("pack", total, console=console) as progress:
            summary = pack(config, progress.advance)
    except PackFailed as e:
        print_summary(e.stats, console)   # what failed, before the gate's one line
        raise
    seconds = time.perf_counter() - start
    print_summary(summary, console)
    console.print(f"processed {summary['total_examples']} manifest records in {seconds:.1f} s "
                  f"({summary['total_examples'] / max(seconds, 1e-9):.1f} examples/s, "
                  f"{resolve_workers(config.workers)} workers) -> {config.output_dir}, {config.stats}")


if __name__ == "__main__":
    from stages import cli
    cli.run("pack", main)
