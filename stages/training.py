"""What both experts share: streaming shard reading, the Trainer setup, metrics, DVCLive, outputs.

Data. A split is Step_3/shards/<split>/{shard,textonly}-*.tar (CONTRACTS.md "Shards"). `read_split`
reads only the JSON members (cheap) to count labeled examples, null targets and classes;
`ShardStream` then streams the examples, never holding a split in memory. Every reader (rank x
DataLoader worker) walks the same undecoded stream in a fixed order and keeps its share before
decoding: examples are dealt to ranks (`wds.split_by_node` applied to examples, padded so that
every rank gets ceil(N / world) of them, like DistributedSampler), then the rank's batches to
workers (`wds.split_by_worker` applied to batches). Splitting examples rather than shards keeps
every rank busy even when a split is a single shard (the pilot), gives every rank the same number
of steps (DDP needs it), and makes the batch sequence independent of the worker count.

Training. Hugging Face Trainer, one explicit DVCLiveCallback, val macro-F1 chooses the best epoch,
weighted cross-entropy when `class_weighting`. Several `train.tasks` (or one non-binary field): one
head per field on the shared backbone (stages/heads.py), a masked per-head loss, the `primary`
head's val macro-F1 picks the epoch, and metrics are reported per head and dataset. Final val/test metrics and predictions come from one
single-process pass over the complete splits on rank 0 with the best model, which then also scores
the evaluation-only diagnostic split when there is one (stages/diagnostic.py; never trained on).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import random
import shutil
import tarfile
import warnings
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import webdataset as wds
from accelerate.data_loader import IterableDatasetShard
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedModel, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import DVCLiveCallback

from stages import diagnostic, heads
from stages.common import atomic_dir, atomic_file, exit_on_interrupt, setup_logging, write_json
from stages.config import Part, check_fields, parse
from stages.console import Progress
from stages.head_metrics import categorical_metrics, multilabel_metrics, rounded
from stages.records import DIAGNOSTIC_SPLIT, SPLITS
from stages.shards import shard_files
from stages.threads import pin_torch_threads

log = logging.getLogger(__name__)

TASKS = ("abuse_hate", "offensive")
ECE_BINS = 15
META_KEYS = ("id", "dataset")   # carried beside the features for predictions, never fed to the model
SHUFFLE_BUFFER = 1000           # examples; training order only
BUCKET_BATCHES = 16             # text: sort windows of 16 batches by length, then shuffle the batches
IMAGE_FIELDS = ("jpg", "png")
TIMING_SUFFIXES = ("runtime", "_per_second")   # Trainer log keys that measure wall-clock time


class TrainingInputError(ValueError):
    """Bad shards, params or model sources; the message names file / example / value."""


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class TrainConfig:
    """The shared `train` params group: `dvc exp run -S train.epochs=3` changes both experts."""
    task: str | None = None  # shortcut for tasks: [task] (older experiments)
    tasks: tuple[str, ...] | None = None  # label fields learned, one head each (null: [abuse_hate])
    primary: str | None = None  # its val macro-F1 picks the epoch; null: abuse_hate if learned, else the first
    head_weights: dict[str, float] = field(default_factory=dict)  # field -> loss weight (default 1)
    target_group_level: str = "name"  # target_group head over the taxonomy's names | category
    label_taxonomy: str = field(  # head layouts of the fields (multi-head only)
        default="Step_3/label_taxonomy.json", metadata={"group": "split"})
    epochs: int = field(default=4, metadata={"min": 1})  # passes over the train split
    batch_size: int = field(default=16, metadata={"min": 1})  # per process
    learning_rate: float = 5e-5    # an expert's own learning_rate, when set, wins
    warmup_ratio: float = 0.1      # share of all steps with a linear warmup, in [0, 1)
    weight_decay: float = 0.01     # AdamW weight decay
    seed: int = 0                  # model init, data order and augmentation
    class_weighting: bool = True   # cross-entropy weighted by inverse train class frequency
    num_workers: int = field(  # DataLoader workers per process (the batch order does not depend on it)
        default=0, metadata={"min": 0})

    def __post_init__(self):
        check_fields(self, "train")
        self.resolve_tasks()   # field names are checked against the taxonomy when its layout is read
        if not 0 <= self.warmup_ratio < 1:
            raise TrainingInputError(f"train.warmup_ratio: {self.warmup_ratio} must be in [0, 1)")

    def resolve_tasks(self) -> None:
        """tasks from `tasks` or the `task` shortcut (both given: they must agree), then primary."""
        tasks = None if self.tasks is None else tuple(self.tasks)
        if tasks is not None and self.task is not None and tasks != (self.task,):
            raise TrainingInputError(f"train.task={self.task!r} and train.tasks={list(tasks)} disagree: "
                                     "set only train.tasks")
        tasks = tasks or (self.task or "abuse_hate",)
        if len(set(tasks)) != len(tasks) or not all(isinstance(name, str) for name in tasks):
            raise TrainingInputError(f"train.tasks: {list(tasks)} must be distinct field names")
        primary = self.primary or ("abuse_hate" if "abuse_hate" in tasks else tasks[0])
        if primary not in tasks:
            raise TrainingInputError(f"train.primary: {primary!r} is not among train.tasks {list(tasks)}")
        unknown = sorted(set(self.head_weights) - set(tasks))
        if unknown or any(not isinstance(w, (int, float)) or w < 0 for w in self.head_weights.values()):
            raise TrainingInputError(f"train.head_weights: {dict(self.head_weights)} must map fields of train.tasks "
                                     f"to weights >= 0 (not learned: {', '.join(unknown) or '-'})")
        if self.target_group_level not in heads.TARGET_GROUP_LEVELS:
            raise TrainingInputError(f"train.target_group_level: {self.target_group_level!r} is not one of "
                                     f"{', '.join(heads.TARGET_GROUP_LEVELS)}")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "primary", primary)
        object.__setattr__(self, "task", tasks[0] if len(tasks) == 1 else None)

    @property
    def multi_head(self) -> bool:
        """Several fields, or one that is not a unified binary field: the multi-head path (stages/heads.py).
        One binary field keeps the plain 2-class expert and today's metrics layout."""
        return len(self.tasks) > 1 or self.tasks[0] not in TASKS

    def layout(self) -> heads.HeadLayout:
        try:
            return heads.head_layout(self.tasks, self.label_taxonomy, self.target_group_level)
        except (OSError, ValueError) as err:
            raise TrainingInputError(str(err)) from err

    def target(self):
        """What the shards' json is read for: the task name (single task) or the head layout."""
        return self.layout() if self.multi_head else self.task


@dataclass(frozen=True)
class ExpertPaths:
    """Where an expert stage reads and writes: keys of its own params group (`text` / `vision`)."""
    shards: Path = field(  # packed shards (train/ val/ test/)
        metadata={"group": "pack", "key": "output_dir", "flag": "shards"})
    out_model: Path       # the saved expert (save_pretrained)
    metrics: Path         # metrics JSON (a DVC metric)
    live_dir: Path        # DVCLive dir (curves for `dvc plots`)
    predictions: Path     # val/test predictions for Step 5
    scratch: Path         # Trainer checkpoints + the live dir while training (git-ignored; removed after success)
    trace_ids: Path | None = field(  # debug: write the train ids each rank/worker read, per epoch, to this folder
        default=None, metadata={"cli_only": True})


def stage_parts(name: str, config_cls) -> tuple[Part, ...]:
    """An expert stage's config: the shared `train` group, then its own group (settings + paths)."""
    return Part("train", TrainConfig), Part(name, config_cls), Part(name, ExpertPaths)


def train_expert(build_expert: Callable, shard_kinds: tuple[str, ...], paths: ExpertPaths, train: TrainConfig,
                 expert_cfg, resume: bool = False) -> dict | None:
    """A training stage: count splits, build the expert, train, write outputs (metrics on rank 0)."""
    target = train.target()
    splits = read_splits(paths.shards, shard_kinds, target)
    pin_torch_threads()
    diagnostic_info, skipped = read_diagnostic(paths.shards, shard_kinds, target)
    seed_everything(train.seed)
    expert = build_expert(expert_cfg, train)
    if train.multi_head:
        setattr(expert.model.config, heads.CONFIG_KEY, target.to_config())   # saved in config.json
    return run_expert(expert, splits, paths, train, resume=resume,
                      diagnostic_split=diagnostic_info, diagnostic_skipped=skipped)


def add_resume_flag(parser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last scratch checkpoint (default: start over, as dvc repro does)")


def stage_main(name: str, config_cls, train_fn: Callable, description: str, argv=None) -> None:
    """The `main()` of both stages: params groups `train` + `name`, then `train_fn(paths, train, cfg)`."""
    (train, expert_cfg, paths), args = parse(f"train_{name}", description, stage_parts(name, config_cls), argv,
                                             extra=add_resume_flag)
    setup_logging(args.verbose)
    quiet_libraries(args.verbose)
    try:
        with exit_on_interrupt(f"train_{name}", lambda: resume_note(paths.scratch / "checkpoints")):
            hub_local_only(expert_cfg.model, f"{name}.model")   # a missing hub model fails here, at once
            metrics = train_fn(paths, train, expert_cfg, resume=args.resume)
    except TrainingInputError as err:
        raise SystemExit(f"train_{name}: {err}") from None
    if metrics is not None:
        print_summary(metrics, f"{name} expert")


def resume_note(checkpoints: Path) -> str:
    found = last_checkpoint(checkpoints)
    return f"; checkpoint kept for --resume: {found}" if found else f"; no checkpoint yet in {checkpoints}"


def label_names(task: str) -> tuple[str, str]:
    return (f"not_{task}", task)


def label_maps(task: str | TrainConfig) -> tuple[dict[int, str], dict[str, int]]:
    """The classifier's output names: a task's two classes, or every head's `<field>=<class>`."""
    if isinstance(task, TrainConfig):
        task = task.layout() if task.multi_head else task.task
    id2label = task.id2label() if isinstance(task, heads.HeadLayout) else dict(enumerate(label_names(task)))
    return id2label, {name: i for i, name in id2label.items()}


def resolve_pip_package(spec: str) -> Path:
    """`pip:<module>` -> the installed package's folder (models shipped as pip packages)."""
    module = spec.removeprefix("pip:")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise TrainingInputError(f"{spec}: python package '{module}' is not installed (see requirements.txt)")
    return Path(list(found.submodule_search_locations)[0])


def resolve_model_source(spec: str) -> str:
    """A hub id or local folder as is; `pip:<module>` -> <package>/model (or the package folder)."""
    if not spec.startswith("pip:"):
        return spec
    package = resolve_pip_package(spec)
    return str(package / "model" if (package / "model").is_dir() else package)


def hub_local_only(spec: str, key: str) -> bool:
    """from_pretrained's `local_files_only` for a model source; a hub id neither cached nor reachable
    fails at once.

    Without this a missing hub model costs a minute of retries (huggingface_hub retries each file
    5 times with back-off) and a wall of warnings. A cached model is loaded from the cache only."""
    if spec.startswith(("pip:", "timm:")) or Path(spec).exists():
        return False
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    how = (f"download it once where there is network (`hf download {spec} --local-dir models/{spec}`) and set "
           f"{key} to that folder (or to any save_pretrained folder)")
    try:
        cached = try_to_load_from_cache(spec, "config.json")
    except ValueError:   # not a valid hub id either
        raise TrainingInputError(f"{key} {spec!r}: no such folder, and not a Hugging Face hub id") from None
    if isinstance(cached, str):
        return True
    where = f"not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        raise TrainingInputError(f"{key} {spec!r}: {where}, and HF_HUB_OFFLINE is set; {how}")
    try:
        HfApi().model_info(spec, timeout=10)
    except Exception as err:   # no network, no such repo, gated: one attempt, then the clear message
        raise TrainingInputError(f"{key} {spec!r}: {where}, and the hub cannot be asked "
                                 f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); {how}") from None
    return False


def seed_everything(seed: int) -> None:
    """Seeds before any model is built (heads are initialised from the global RNG)."""
    from transformers import enable_full_determinism, set_seed

    if torch.cuda.is_available():
        set_seed(seed)
    else:
        enable_full_determinism(seed)  # also torch.use_deterministic_algorithms(True)


def quiet_libraries(verbose: bool) -> None:
    """Silence advisory warnings and progress bars of transformers/torch unless --verbose."""
    import transformers

    if verbose:
        transformers.logging.set_verbosity_info()
        return
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("dvclive").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


# ---------------------------------------------------------------- reading shards

@dataclass(frozen=True)
class SplitInfo:
    """One split's shards and what a JSON-only pass learned about them."""
    name: str
    shards: tuple[str, ...]
    labeled: int                                   # examples with a non-null target (multi-head: any)
    skipped_null: int                              # examples whose target is null (not trained on)
    class_counts: tuple[int, int]                  # single task only
    by_dataset: dict[str, tuple[int, int]]         # dataset -> class counts (single task only)
    head_counts: heads.HeadCounts | None = None    # multi-head: per dataset and head

    @property
    def majority(self) -> int:
        return majority_class(self.class_counts)

    @property
    def datasets(self) -> list[str]:
        """The datasets with labeled examples."""
        return sorted(self.by_dataset if self.head_counts is None else self.head_counts.by_dataset)


def majority_class(counts: tuple[int, int]) -> int:
    return int(counts[1] > counts[0])


def member_key_ext(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the member name."""
    key, _, ext = name.partition(".")
    return key, ext.lower()


def read_target(meta: dict[str, Any], task: str, where: str) -> int | None:
    labels = meta.get("labels")
    if not isinstance(labels, dict) or task not in labels:
        raise TrainingInputError(f"{where}: json has no 'labels.{task}'")
    value = labels[task]
    if value is None:
        return None
    if isinstance(value, (bool, int)) and value in (0, 1):
        return int(value)
    raise TrainingInputError(f"{where}: labels.{task} = {value!r}, expected 0, 1 or null")


def example_target(meta: dict[str, Any], task, where: str):
    """A single task's 0/1 (or None), or a head layout's target vector (or None)."""
    if isinstance(task, str):
        return read_target(meta, task, where)
    try:
        return task.encode(meta, where)
    except heads.HeadLayoutError as err:
        raise TrainingInputError(str(err)) from err


def read_split(shards_dir: Path, split: str, kinds: tuple[str, ...], task) -> SplitInfo:
    """Count one split from the JSON members only (tarfile seeks past the image bytes).
    kinds: ("image", "textonly") = shard-*.tar and textonly-*.tar, ("image",) = shard-*.tar."""
    shards = tuple(shard_files(shards_dir, split, kinds))
    labeled = skipped = 0
    counts = [0, 0]
    by_dataset: dict[str, list[int]] = {}
    head_counts = None if isinstance(task, str) else heads.HeadCounts(task)
    for shard in shards:
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    key, ext = member_key_ext(member.name)
                    if not member.isfile() or ext != "json":
                        continue
                    meta = json.loads(tar.extractfile(member).read())
                    target = example_target(meta, task, f"{shard}: {key}")
                    if target is None:
                        skipped += 1
                        continue
                    labeled += 1
                    if head_counts is not None:
                        head_counts.add(str(meta.get("dataset")), target)
                        continue
                    counts[target] += 1
                    by_dataset.setdefault(str(meta.get("dataset")), [0, 0])[target] += 1
        except (tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TrainingInputError(f"{shard}: unreadable shard: {err}") from err
    return SplitInfo(split, shards, labeled, skipped, (counts[0], counts[1]),
                     {name: (c[0], c[1]) for name, c in sorted(by_dataset.items())}, head_counts)


def read_splits(shards_dir: Path, kinds: tuple[str, ...], task) -> dict[str, SplitInfo]:
    splits = {split: read_split(shards_dir, split, kinds, task) for split in SPLITS}
    for info in splits.values():
        if not info.shards:
            raise TrainingInputError(f"{Path(shards_dir) / info.name}: no {' or '.join(kinds)} shard files "
                                     "(run the pack stage first: dvc repro pack)")
        if info.labeled == 0:
            raise TrainingInputError(
                f"{Path(shards_dir) / info.name}: no labeled examples for task '{task_name(task)}' in its "
                f"{' + '.join(kinds)} shards ({len(info.shards)} file(s), {info.skipped_null} with a null target)")
    return splits


def task_name(task) -> str:
    return task if isinstance(task, str) else ", ".join(task.names)


def read_diagnostic(shards_dir: Path, kinds: tuple[str, ...], task) -> tuple[SplitInfo | None, str | None]:
    """The evaluation-only split this expert can score, or (None, why it cannot); (None, None)
    when there is no diagnostic split. Never trained on, never used to pick the epoch."""
    every = read_split(shards_dir, DIAGNOSTIC_SPLIT, ("image", "textonly"), task)
    if not every.shards:
        return None, None
    info = read_split(shards_dir, DIAGNOSTIC_SPLIT, kinds, task)
    if info.labeled:
        return info, None
    if info.skipped_null:
        why = f"no {DIAGNOSTIC_SPLIT} example has a '{task_name(task)}' label ({info.skipped_null} null)"
    else:
        why = (f"text-only suite(s) ({', '.join(every.datasets) or 'no labeled examples'}): this expert reads "
               f"{' + '.join(kinds)} shards only")
    log.warning("%s: %s; not scored", Path(shards_dir) / DIAGNOSTIC_SPLIT, why)
    return None, why


def raw_examples(shards: Iterable[str], task, wanted: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """Labeled examples in shard order, undecoded: {id, dataset, label, <field>: bytes}."""
    def keep(name: str) -> bool:
        return member_key_ext(name)[1] in wanted + ("json",)

    samples = wds.tarfile_samples(({"url": shard} for shard in shards), select_files=keep)
    for sample in samples:
        where = f"{sample.get('__url__')}: {sample.get('__key__')}"
        if "json" not in sample:
            raise TrainingInputError(f"{where}: example without a .json member")
        meta = json.loads(sample["json"])
        target = example_target(meta, task, where)
        if target is None:
            continue
        example = {"id": meta.get("id", sample["__key__"]), "dataset": str(meta.get("dataset")),
                   "label": target, "where": where}
        for name in wanted:
            if name in sample:
                example[name] = sample[name]
        yield example


def chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def length_sorted_windows(examples: Iterable[dict], window: int) -> Iterator[dict]:
    """Length bucketing: each window of examples sorted by text length (stable)."""
    for chunk in chunks(examples, window):
        yield from sorted(chunk, key=lambda example: len(example.get("txt", b"")))


def shuffled_batches(batches: Iterable[list], window: int, rng: random.Random, batch_size: int) -> Iterator[list]:
    """Batch order shuffled within windows; the short last batch stays last, so that the
    DataLoader re-batching the example stream cuts it at the same places."""
    short = None
    for chunk in chunks(batches, window):
        if len(chunk[-1]) < batch_size:
            short = chunk.pop()
        rng.shuffle(chunk)
        yield from chunk
    if short:
        yield short


def padded(examples: Iterable[dict], total: int, where: str) -> Iterator[dict]:
    """Yield `examples`, repeating the first one when it is one short of `total` (a rank with
    floor(N/world) examples); any other count means the shards changed under us."""
    first, count = None, 0
    for example in examples:
        first = first or example
        count += 1
        yield example
    if count == total - 1 and first is not None:
        yield first
    elif count != total:
        raise TrainingInputError(f"{where}: expected {total} labeled examples for this process, read {count}"
                                 " (did the shards change while training?)")


class ShardStream(IterableDataset):
    """One split's labeled examples, decoded by `decode(raw, epoch) -> features`, streamed.

    shuffle_seed=None: the fixed shard order (evaluation). Otherwise shards and examples are
    shuffled per epoch (buffer of SHUFFLE_BUFFER) from (seed, epoch); `bucket_by_length` sorts
    windows of BUCKET_BATCHES batches by text length and shuffles the batch order.
    distributed=False reads the whole split whatever the launcher (the final metrics pass).
    """

    def __init__(self, split: SplitInfo, task, fields_wanted: tuple[str, ...],
                 decode: Callable[[dict, int], dict], batch_size: int, *, shuffle_seed: int | None = None,
                 bucket_by_length: bool = False, distributed: bool = True, trace_dir: Path | None = None):
        super().__init__()
        self.split, self.task, self.fields_wanted, self.decode = split, task, fields_wanted, decode
        self.batch_size, self.shuffle_seed, self.bucket_by_length = batch_size, shuffle_seed, bucket_by_length
        self.distributed, self.trace_dir = distributed, trace_dir
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def world(self) -> tuple[int, int]:
        if not self.distributed:
            return 0, 1
        rank, world_size, _, _ = wds.utils.pytorch_worker_info()
        return rank, world_size

    def __len__(self) -> int:
        return math.ceil(self.split.labeled / self.world()[1])

    def ordered_examples(self) -> Iterator[dict]:
        """The undecoded example stream every reader of this epoch sees, before any split."""
        shards = list(self.split.shards)
        if self.shuffle_seed is None:
            return raw_examples(shards, self.task, self.fields_wanted)
        rng = random.Random(self.shuffle_seed * 1_000_003 + self.epoch)
        rng.shuffle(shards)
        examples = wds.shuffle(SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER, rng=rng)(
            raw_examples(shards, self.task, self.fields_wanted))
        if self.bucket_by_length:
            world_size = self.world()[1]
            examples = length_sorted_windows(examples, self.batch_size * BUCKET_BATCHES * world_size)
        return examples

    def rank_batches(self) -> Iterator[list[dict]]:
        examples = self.ordered_examples()
        if self.distributed and self.world()[1] > 1:
            examples = wds.split_by_node(examples)
        examples = padded(examples, len(self), str(Path(self.split.shards[0]).parent))
        batches = chunks(examples, self.batch_size)
        if self.bucket_by_length and self.shuffle_seed is not None:
            batch_rng = random.Random(self.shuffle_seed * 1_000_003 + self.epoch + 7)
            batches = shuffled_batches(batches, BUCKET_BATCHES, batch_rng, self.batch_size)
        return wds.split_by_worker(batches)

    def __iter__(self) -> Iterator[dict]:
        with self.open_trace() as trace:
            for batch in self.rank_batches():
                for raw in batch:
                    if trace:
                        trace.write(f"{raw['id']}\n")
                    yield self.decode(raw, self.epoch)

    def open_trace(self):
        if self.trace_dir is None:
            return contextlib.nullcontext(None)
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        Path(self.trace_dir).mkdir(parents=True, exist_ok=True)
        name = f"{self.split.name}-epoch{self.epoch}-rank{rank}-worker{worker}.txt"
        return open(Path(self.trace_dir) / name, "a", encoding="utf-8")


class ModelCollator:
    """Drops the metadata before the model's collator; `with_meta` also returns it, per example."""

    def __init__(self, collate: Callable[[list[dict]], dict], with_meta: bool = False):
        self.collate, self.with_meta = collate, with_meta

    def __call__(self, examples: list[dict]):
        features = [{k: v for k, v in example.items() if k not in META_KEYS} for example in examples]
        batch = self.collate(features)
        if not self.with_meta:
            return batch
        return batch, [{k: example[k] for k in META_KEYS} for example in examples]


# ---------------------------------------------------------------- metrics

def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of P(class 1): over `n_bins` equal-width bins of the predicted probability,
    sum_b (n_b / N) * |observed positive rate_b - mean predicted probability_b| -- the reliability
    diagram of DVCLive's calibration plot, summarised. Bins as sklearn's calibration_curve
    (strategy="uniform"), which gives the per-bin rates for the non-empty bins."""
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=n_bins, strategy="uniform")
    bin_ids = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probs)
    sizes = np.bincount(bin_ids, minlength=n_bins)
    sizes = sizes[sizes > 0]
    return float(np.sum(sizes / len(probs) * np.abs(prob_true - prob_pred)))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, majority: int) -> dict[str, Any]:
    """Accuracy, macro-F1 (over both classes, for the model and the baseline alike), AUROC (null
    with one class), ECE, and the macro-F1 of always predicting the train split's majority class."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=float)
    preds = (probs > 0.5).astype(int)   # = argmax of the two logits (ties go to class 0)
    both = len(np.unique(labels)) == 2
    return {
        "accuracy": rounded(accuracy_score(labels, preds)),
        "f1_macro": rounded(f1_score(labels, preds, labels=[0, 1], average="macro", zero_division=0)),
        "auroc": rounded(roc_auc_score(labels, probs)) if both else None,
        "ece": rounded(expected_calibration_error(labels, probs)),
        "majority_baseline_f1_macro": rounded(
            f1_score(labels, np.full_like(labels, majority), labels=[0, 1], average="macro", zero_division=0)),
        "support": int(len(labels)),
        "positives": int(labels.sum()),
    }


def epoch_metrics(eval_pred) -> dict[str, float]:
    """Trainer's per-epoch validation metrics (logged by DVCLive; f1_macro picks the best epoch)."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1)[:, 1].numpy()
    metrics = classification_metrics(labels, probs, majority=0)
    keep = ("accuracy", "f1_macro", "ece") + (("auroc",) if metrics["auroc"] is not None else ())
    return {name: metrics[name] for name in keep}


class HeadEpochMetrics:
    """Multi-head validation metrics per epoch: `f1_macro` is the primary head's (it picks the
    best epoch), `<field>_f1_macro` every head's."""

    def __init__(self, layout: heads.HeadLayout, primary: str):
        self.layout, self.primary = layout, primary

    def __call__(self, eval_pred) -> dict[str, float]:
        probs = self.layout.probabilities(torch.as_tensor(eval_pred.predictions, dtype=torch.float32)).numpy()
        labels = np.asarray(eval_pred.label_ids)
        out = {}
        for name in self.layout.names:
            values = head_metrics(self.layout, name, labels, probs, majority=None)
            if values is not None:
                out[f"{name}_f1_macro"] = values["f1_macro"]
        out["f1_macro"] = out.get(f"{self.primary}_f1_macro", 0.0)
        return out


def head_rows(layout: heads.HeadLayout, name: str, labels: np.ndarray, probs: np.ndarray):
    """(row mask, gold of the head, its probabilities) over the rows where the field is labeled;
    a binary head's probabilities are P(class 1), as the single-task path's."""
    head = layout.head(name)
    gold = labels[:, layout.slot_slices()[name]]
    rows = gold[:, 0] != heads.MISSING
    head_probs = probs[rows][:, layout.logit_slices()[name]]
    if head.kind == "binary":
        return rows, gold[rows, 0].astype(int), head_probs[:, 1]
    return rows, gold[rows].astype(int) if head.kind == "multilabel" else gold[rows, 0].astype(int), head_probs


def head_metrics(layout: heads.HeadLayout, name: str, labels: np.ndarray, probs: np.ndarray,
                 majority) -> dict[str, Any] | None:
    """One head's metrics over its labeled rows (None when there is none); majority None: no baseline
    needed (epoch metrics), class 0 / the empty set is used."""
    head = layout.head(name)
    rows, gold, head_probs = head_rows(layout, name, labels, probs)
    if not rows.any():
        return None
    if head.kind == "binary":
        return classification_metrics(gold, head_probs, majority or 0)
    if head.kind == "categorical":
        return categorical_metrics(gold, head_probs, majority or 0)
    return multilabel_metrics(gold, head_probs, np.zeros(head.width, dtype=int) if majority is None else majority)


@dataclass
class Predictions:
    split: str
    ids: list[str]
    datasets: list[str]
    labels: np.ndarray
    probs: np.ndarray       # P(class 1); multi-head: per example every head's probabilities (HeadLayout.probabilities)


def predict(model: PreTrainedModel, stream: ShardStream, collate: Callable, batch_size: int,
            num_workers: int = 0, layout: heads.HeadLayout | None = None) -> Predictions:
    """One pass over a whole split (stream must be distributed=False) with ids kept; with a head
    layout the labels are target vectors and probs every head's probabilities."""
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=ModelCollator(collate, with_meta=True))
    device = next(model.parameters()).device
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and torch.cuda.is_bf16_supported()
                else contextlib.nullcontext())
    ids, datasets, labels, probs = [], [], [], []
    model.eval()
    with torch.no_grad(), autocast:
        for batch, metas in loader:
            labels.append(batch.pop("labels").numpy())
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            probs.append((layout.probabilities(logits) if layout else torch.softmax(logits.float(), dim=-1)[:, 1])
                         .cpu().numpy())
            ids += [meta["id"] for meta in metas]
            datasets += [meta["dataset"] for meta in metas]
    return Predictions(stream.split.name, ids, datasets, np.concatenate(labels), np.concatenate(probs))


def split_metrics(pred: Predictions, train: SplitInfo) -> dict[str, Any]:
    """Metrics of one split, overall and per source dataset (the majority-class baseline of a
    dataset uses that dataset's train majority when it has train examples, else the overall one)."""
    out = classification_metrics(pred.labels, pred.probs, train.majority)
    datasets = np.asarray(pred.datasets)
    out["by_dataset"] = {
        name: classification_metrics(pred.labels[datasets == name], pred.probs[datasets == name],
                                     majority_class(train.by_dataset.get(name, train.class_counts)))
        for name in sorted(set(pred.datasets))}
    return out


def multi_head_split_metrics(pred: Predictions, train: SplitInfo, layout: heads.HeadLayout) -> dict[str, Any]:
    """Per head: its metrics over the split's labeled rows, then `by_dataset` (baselines: the train
    majority of the dataset when it has labeled train examples of the field, else the overall one)."""
    counts, datasets = train.head_counts, np.asarray(pred.datasets)
    out = {}
    for head in layout.heads:
        section = head_metrics(layout, head.name, pred.labels, pred.probs,
                               heads.majority_target(head, counts.total(head.name)))
        if section is None:
            continue
        section["by_dataset"] = {}
        for name in sorted(set(pred.datasets)):
            mine = datasets == name
            values = head_metrics(layout, head.name, pred.labels[mine], pred.probs[mine],
                                  heads.majority_target(head, counts.of(name, head.name)))
            if values is not None:
                section["by_dataset"][name] = values
        out[head.name] = section
    return out


def prediction_rows(preds: Iterable[Predictions], layout: heads.HeadLayout | None = None) -> list[dict[str, Any]]:
    if layout is not None:
        return multi_head_prediction_rows(preds, layout)
    rows = [{"id": i, "dataset": d, "split": p.split, "label": int(y), "prob": rounded(q)}
            for p in preds for i, d, y, q in zip(p.ids, p.datasets, p.labels, p.probs)]
    return sorted(rows, key=lambda row: (row["split"], row["id"]))


def multi_head_prediction_rows(preds: Iterable[Predictions], layout: heads.HeadLayout) -> list[dict[str, Any]]:
    """Every head's gold label (null when not annotated) and probabilities: a binary head's P(class 1),
    a categorical head's distribution, a multi-label head's P(label) per label (order: config.json)."""
    def head_probs(probs: np.ndarray) -> dict[str, Any]:
        out = {}
        for head, part in zip(layout.heads, layout.logit_slices().values()):
            values = [rounded(p) for p in probs[part]]
            out[head.name] = values[1] if head.kind == "binary" else values
        return out

    rows = [{"id": i, "dataset": d, "split": p.split, "labels": layout.decode_labels(y), "probs": head_probs(q)}
            for p in preds for i, d, y, q in zip(p.ids, p.datasets, p.labels, p.probs)]
    return sorted(rows, key=lambda row: (row["split"], row["id"]))


# ---------------------------------------------------------------- training

@dataclass
class Expert:
    """What differs between the text and the vision expert; `run_expert` does the rest."""
    model: PreTrainedModel
    processor: Any                             # tokenizer / image processor, saved beside the model
    fields_wanted: tuple[str, ...]             # shard members read: ("txt",) or IMAGE_FIELDS
    decode_train: Callable[[dict, int], dict]
    decode_eval: Callable[[dict, int], dict]
    collate: Callable[[list[dict]], dict]      # features (no metadata) -> model batch
    model_id: str                              # as given in params (no resolved paths)
    pretrained: bool
    learning_rate: float
    bucket_by_length: bool = False


def class_weights(counts: tuple[int, int]) -> list[float]:
    """Inverse class frequency, N / (2 * n_c); a class absent from train gets 1 (it never occurs)."""
    total = sum(counts)
    return [rounded(total / (2 * n)) if n else 1.0 for n in counts]


class ExpertTrainer(Trainer):
    """Trainer with weighted cross-entropy (or a multi-head loss) and ShardStream's own rank split left alone."""

    def __init__(self, *args, class_weights: list[float] | None = None,
                 head_loss: heads.MultiHeadLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)
        self.head_loss = head_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"].float()
        if self.head_loss is not None:
            loss = self.head_loss(logits, labels)
            return (loss, outputs) if return_outputs else loss
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self):
        return own_rank_split(super().get_train_dataloader())

    def get_eval_dataloader(self, eval_dataset=None):
        return own_rank_split(super().get_eval_dataloader(eval_dataset))


def own_rank_split(loader):
    """With several processes accelerate wraps an IterableDataset in IterableDatasetShard, which
    would split ShardStream's already-split stream again: make the wrapper a pass-through (the
    same trick Trainer plays on its BatchRebalanceSampler) and keep every gathered eval prediction."""
    wrapper = getattr(loader, "dataset", None)
    if isinstance(wrapper, IterableDatasetShard) and isinstance(wrapper.dataset, ShardStream):
        wrapper.num_processes, wrapper.process_index, wrapper.batch_size = 1, 0, 1
        wrapper.total_dataset_length = 0   # gather_for_metrics: no remainder to cut
    return loader


class ProgressCallback(TrainerCallback):
    """Training progress in examples/s with ETA on the main process (replaces Trainer's tqdm);
    plain lines every ~10 s when the output is not a terminal (stages/console.py)."""

    def __init__(self, examples_per_step: int):
        self.examples_per_step = examples_per_step
        self.progress = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = Progress("train epoch 1", state.max_steps * self.examples_per_step,
                                     completed=state.global_step * self.examples_per_step).__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step * self.examples_per_step,
                                 label=f"train epoch {math.ceil(state.epoch or 0)}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.progress is not None and metrics:
            loss = next((e["loss"] for e in reversed(state.log_history) if "loss" in e), float("nan"))
            self.progress.note(
                f"epoch {state.epoch:.0f}: train loss {loss:.4f}  val loss {metrics.get('eval_loss', float('nan')):.4f}"
                f"  val macro-F1 {metrics.get('eval_f1_macro', float('nan')):.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


class ReproducibleDVCLive(DVCLiveCallback):
    """DVCLive logging without the wall-clock figures (runtime, samples/s): the live dir is a DVC
    output, and it must be byte-identical across runs like the metrics (speed is printed instead)."""

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        logs = {key: value for key, value in (logs or {}).items() if not key.endswith(TIMING_SUFFIXES)}
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


def training_arguments(cfg: TrainConfig, expert: Expert, output_dir: Path) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        learning_rate=expert.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="f1_macro", greater_is_better=True,
        save_total_limit=1, seed=cfg.seed, data_seed=cfg.seed, full_determinism=not cuda,
        bf16=bf16, fp16=cuda and not bf16, use_cpu=not cuda,  # use_cpu: torchrun on CPU -> DDP over gloo
        report_to="none", disable_tqdm=True,
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=cfg.num_workers,
        accelerator_config={"dispatch_batches": False},  # every rank reads its own share
        log_level="passive", log_level_replica="passive")   # quiet_libraries decides


def epoch_summary(state) -> tuple[int, int | None]:
    """(epochs run, best epoch by val macro-F1) from the Trainer's log history."""
    evals = [entry for entry in state.log_history if "eval_f1_macro" in entry]
    epochs_run = int(round(max((entry.get("epoch", 0) for entry in state.log_history), default=0)))
    best = max(evals, key=lambda entry: entry["eval_f1_macro"], default=None)  # first of equals
    return epochs_run, (int(round(best["epoch"])) if best else None)


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def run_expert(expert: Expert, splits: dict[str, SplitInfo], paths: ExpertPaths, cfg: TrainConfig,
               resume: bool = False, diagnostic_split: SplitInfo | None = None,
               diagnostic_skipped: str | None = None) -> dict[str, Any] | None:
    """Train, pick the best epoch on val macro-F1, then (main process) write model, metrics,
    predictions and live dir atomically. Returns the metrics on the main process, else None."""
    from dvclive import Live

    checkpoints, live_work = paths.scratch / "checkpoints", paths.scratch / "live"
    args = training_arguments(cfg, expert, checkpoints)   # also sets up torch.distributed
    main = args.process_index == 0
    with args.main_process_first(desc="scratch"):
        resume_from = last_checkpoint(checkpoints) if resume else None
        if main and resume_from is None:
            shutil.rmtree(paths.scratch, ignore_errors=True)
    if resume and resume_from is None and main:
        log.warning("--resume: no checkpoint in %s, training from the start", checkpoints)

    task, bs = cfg.target(), cfg.batch_size
    layout = task if cfg.multi_head else None
    train_stream = ShardStream(splits["train"], task, expert.fields_wanted, expert.decode_train, bs,
                               shuffle_seed=cfg.seed, bucket_by_length=expert.bucket_by_length,
                               trace_dir=paths.trace_ids)
    val_stream = ShardStream(splits["val"], task, expert.fields_wanted, expert.decode_eval, bs)
    weights = train_class_weights(splits["train"], layout) if cfg.class_weighting else None
    head_loss = heads.MultiHeadLoss(layout, weights, dict(cfg.head_weights)) if layout else None
    if layout and resume_from is None:
        heads.init_label_priors(expert.model, layout, splits["train"].head_counts, weights)

    with contextlib.ExitStack() as stack:
        live = stack.enter_context(Live(str(live_work), dvcyaml=False, save_dvc_exp=False,
                                        resume=resume_from is not None)) if main else None
        callbacks = [ReproducibleDVCLive(live=live), ProgressCallback(bs * args.world_size)] if main else []
        trainer = ExpertTrainer(model=expert.model, args=args, train_dataset=train_stream,
                                eval_dataset=val_stream, data_collator=ModelCollator(expert.collate),
                                compute_metrics=HeadEpochMetrics(layout, cfg.primary) if layout else epoch_metrics,
                                callbacks=callbacks, class_weights=None if layout else weights,
                                head_loss=head_loss)
        trainer.remove_callback(PrinterCallback)   # ProgressCallback reports instead
        trainer.train(resume_from_checkpoint=resume_from)
        if main:
            preds = [predict(trainer.model, ShardStream(splits[split], task, expert.fields_wanted,
                                                        expert.decode_eval, bs, distributed=False),
                             expert.collate, bs, cfg.num_workers, layout) for split in ("val", "test")]
            log_test_plots(live, primary_view(preds[1], layout, cfg.primary))
            report = diagnostic_report(trainer.model, expert, diagnostic_split, diagnostic_skipped, paths, cfg, live,
                                       preds)
    metrics = None
    if main:
        epochs_run, best_epoch = epoch_summary(trainer.state)
        head = ({"task": cfg.task} if layout is None else
                {"tasks": list(cfg.tasks), "primary": cfg.primary, "head_weights": dict(cfg.head_weights),
                 "target_group_level": cfg.target_group_level,
                 "head_examples": {name: {head: info.head_counts.labeled(head) for head in layout.names}
                                   for name, info in splits.items()}})
        metrics = {
            "model": expert.model_id, "pretrained": expert.pretrained, **head,
            "epochs": cfg.epochs, "epochs_run": epochs_run, "best_epoch": best_epoch,
            "examples": {name: info.labeled for name, info in splits.items()},
            "skipped_null_labels": {name: info.skipped_null for name, info in splits.items()},
            "class_weights": weights, "ece_bins": ECE_BINS,
            **{p.split: (multi_head_split_metrics(p, splits["train"], layout) if layout
                         else split_metrics(p, splits["train"])) for p in preds if p.split in SPLITS},
            **({DIAGNOSTIC_SPLIT: report} if report else {})}
        write_outputs(expert, metrics, prediction_rows(preds, layout), live_work, paths)
    trainer.accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(paths.scratch, ignore_errors=True)   # done: checkpoints are no longer needed
    return metrics


def train_class_weights(train: SplitInfo, layout: heads.HeadLayout | None):
    """Single task: the two class weights; multi-head: field -> weights of its head."""
    if layout is None:
        return class_weights(train.class_counts)
    return {head.name: heads.head_class_weights(head, train.head_counts.total(head.name)) for head in layout.heads}


def primary_view(pred: Predictions, layout: heads.HeadLayout | None, name: str) -> Predictions | None:
    """A multi-head prediction reduced to one binary head's labeled rows (gold 0/1, P(class 1)) --
    the shape of a single-task one; None when that head is not binary or has no labeled row."""
    if layout is None:
        return pred
    if name not in layout.names or layout.head(name).kind != "binary":
        return None
    rows, gold, probs = head_rows(layout, name, pred.labels, pred.probs)
    if not rows.any():
        return None
    return Predictions(pred.split, [i for i, keep in zip(pred.ids, rows) if keep],
                       [d for d, keep in zip(pred.datasets, rows) if keep], gold, probs)


def diagnostic_report(model, expert: Expert, info: SplitInfo | None, skipped: str | None, paths: ExpertPaths,
                      cfg: TrainConfig, live, preds: list[Predictions]) -> dict[str, Any] | None:
    """Score the diagnostic split with the chosen model (its predictions join `preds`), log the
    per-functionality bar plot; the metrics section, or None when there is no diagnostic split."""
    if info is None:
        return {"skipped": skipped} if skipped else None
    layout = cfg.target() if cfg.multi_head else None
    pred = predict(model, ShardStream(info, cfg.target(), expert.fields_wanted, expert.decode_eval, cfg.batch_size,
                                      distributed=False), expert.collate, cfg.batch_size, cfg.num_workers, layout)
    preds.append(pred)
    task = cfg.task if layout is None else "abuse_hate"   # the suites test hate detection
    scored = primary_view(pred, layout, task)
    if scored is None:
        return {"skipped": f"no {task} head with labeled {DIAGNOSTIC_SPLIT} examples"}
    section = diagnostic.report(scored.ids, scored.labels, scored.probs, diagnostic.read_cases(paths.shards),
                                label_names(task))
    live.log_plot(diagnostic.PLOT_NAME, diagnostic.plot_rows(section), x="accuracy", y="functionality",
                  template="bar_horizontal", title=f"Diagnostic accuracy per functionality ({task})")
    return section


def log_test_plots(live, test: Predictions | None) -> None:
    """Confusion matrix, ROC and calibration curves of the test split (DVCLive sklearn plots);
    multi-head: of the primary head when it is binary (test=None: no plots)."""
    if test is None:
        return
    preds = (test.probs > 0.5).astype(int)
    live.log_sklearn_plot("confusion_matrix", test.labels.tolist(), preds.tolist(), name="test/confusion_matrix")
    live.log_sklearn_plot("calibration", test.labels.tolist(), test.probs.tolist(), name="test/calibration",
                          n_bins=ECE_BINS)
    if len(np.unique(test.labels)) == 2:
        live.log_sklearn_plot("roc", test.labels.tolist(), test.probs.tolist(), name="test/roc")


def write_outputs(expert: Expert, metrics: dict, rows: list[dict], live_work: Path, paths: ExpertPaths) -> None:
    """Model folder, metrics, predictions and live dir: each written to a temp beside it, renamed
    only once all four are complete, the metrics file last."""
    with contextlib.ExitStack() as stack:
        metrics_file = stack.enter_context(atomic_file(paths.metrics))   # entered first: renamed last
        model_dir = stack.enter_context(atomic_dir(paths.out_model))
        expert.model.save_pretrained(model_dir)
        if type(expert.processor).__name__ != "TimmWrapperImageProcessor":
            expert.processor.save_pretrained(model_dir)   # a timm wrapper keeps its data config in config.json
        live_dir = stack.enter_context(atomic_dir(paths.live_dir))
        shutil.copytree(live_work, live_dir, dirs_exist_ok=True)
        predictions = stack.enter_context(atomic_file(paths.predictions))
        predictions.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")
        write_json(metrics_file, metrics)


def print_summary(metrics: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    if "tasks" in metrics:
        Console().print(multi_head_summary(metrics, title))
        if DIAGNOSTIC_SPLIT in metrics:
            Console().print(diagnostic.summary_line(metrics[DIAGNOSTIC_SPLIT]))
        return
    table = Table(title=f"{title}: {metrics['model']}  task={metrics['task']}  best epoch "
                        f"{metrics['best_epoch']}/{metrics['epochs_run']}  pretrained={metrics['pretrained']}")
    columns = ("accuracy", "f1_macro", "majority_baseline_f1_macro", "auroc", "ece", "support")
    table.add_column("split / dataset")
    for column in columns:
        table.add_column(column.replace("majority_baseline_f1_macro", "baseline F1"), justify="right")

    def cells(values: dict) -> list[str]:
        return ["-" if values[c] is None else f"{values[c]:.3f}" if isinstance(values[c], float) else str(values[c])
                for c in columns]

    for split in ("val", "test"):
        table.add_row(f"[bold]{split}[/]", *cells(metrics[split]))
        for name, values in metrics[split]["by_dataset"].items():
            table.add_row(f"  {name}", *cells(values))
    Console().print(table)
    if DIAGNOSTIC_SPLIT in metrics:
        Console().print(diagnostic.summary_line(metrics[DIAGNOSTIC_SPLIT]))


def multi_head_summary(metrics: dict[str, Any], title: str):
    """One row per split, head and dataset: the head's main metrics beside its majority baseline."""
    from rich.table import Table

    table = Table(title=f"{title}: {metrics['model']}  tasks={','.join(metrics['tasks'])}  primary="
                        f"{metrics['primary']}  best epoch {metrics['best_epoch']}/{metrics['epochs_run']}")
    for column in ("split / head / dataset", "metric", "model", "baseline", "support"):
        table.add_column(column, justify="left" if column.startswith("split") or column == "metric" else "right")

    def row(label: str, values: dict) -> None:
        main = "f1_macro" if "f1_micro" not in values else "f1_micro"
        table.add_row(label, main, f"{values[main]:.3f}", f"{values['majority_baseline_' + main]:.3f}",
                      str(values["support"]))

    for split in ("val", "test"):
        for head, values in metrics[split].items():
            row(f"[bold]{split}[/] {head}", values)
            for name, per_dataset in values["by_dataset"].items():
                row(f"  {name}", per_dataset)
    return table
