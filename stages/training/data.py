"""Reading shards. A split is Step_3/shards/<split>/{shard,textonly}-*.tar (README "Shards").
`read_split` reads only the JSON members (cheap) to count labeled examples, null targets and
classes; `ShardStream` then streams the examples, never holding a split in memory.

Every reader (rank x DataLoader worker) walks the same undecoded stream in a fixed order and keeps
its share before decoding: examples are dealt to ranks (`wds.split_by_node` applied to examples,
padded so that every rank gets ceil(N / world) of them, like DistributedSampler), then the rank's
batches to workers (`wds.split_by_worker` applied to batches). Splitting examples rather than
shards keeps every rank busy even when a split is a single shard (the pilot), gives every rank the
same number of steps (DDP needs it), and makes the batch sequence independent of the worker count.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import tarfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import webdataset as wds
from torch.utils.data import IterableDataset

from stages import heads
from stages.records import DIAGNOSTIC_SPLIT, SPLITS
from stages.scores import val_part
from stages.shards import INDEX, KINDS, shard_files
from stages.training.config import Tasks, TrainingInputError

log = logging.getLogger(__name__)

META_KEYS = ("id", "dataset")   # carried beside the features for predictions, never fed to the model
SHUFFLE_BUFFER = 1000           # examples; training order only
BUCKET_BATCHES = 16             # text: sort windows of 16 batches by length, then shuffle the batches
IMAGE_FIELDS = ("jpg", "png")


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
    shard_labeled: tuple[int, ...] = ()            # labeled examples of each shard, in `shards` order
    shard_examples: tuple[int, ...] = ()           # all examples (labeled or not) of each shard
    part: str | None = None                        # only the examples of this val part (scores.val_part)

    @property
    def majority(self) -> int:
        return majority_class(self.class_counts)

    @property
    def datasets(self) -> list[str]:
        """The datasets with labeled examples."""
        return sorted(self.by_dataset if self.head_counts is None else self.head_counts.by_dataset)


@dataclass(frozen=True)
class ExpertData:
    """What an expert trains and is scored on: train/val/test, val's `select` part (the best epoch is
    picked on it; fuse fits on the other part), and the diagnostic split it can score (None: none, or
    `diagnostic_skipped` says why it cannot)."""
    splits: dict[str, SplitInfo]
    selection: SplitInfo
    diagnostic: SplitInfo | None
    diagnostic_skipped: str | None


def read_data(shards_dir: Path, kinds: tuple[str, ...], tasks: Tasks) -> ExpertData:
    """Every split of `kinds` counted (JSON members only) and checked against pack's index."""
    splits = read_splits(shards_dir, kinds, tasks)
    return ExpertData(splits, read_selection(shards_dir, kinds, tasks, splits["val"]),
                      *read_diagnostic(shards_dir, kinds, tasks))


def read_selection(shards_dir: Path, kinds: tuple[str, ...], tasks: Tasks, val: SplitInfo) -> SplitInfo:
    """Val's `select` part, counted (the stage's summary prints it beside all of val)."""
    selection = read_split(shards_dir, "val", kinds, tasks, part="select")
    if selection.labeled == 0:
        raise TrainingInputError(f"{Path(shards_dir) / 'val'}: none of the {val.labeled} labeled val examples "
                                 "falls in the part epochs are selected on (scores.val_part); val is too small")
    return selection


def majority_class(counts: tuple[int, int]) -> int:
    return int(counts[1] > counts[0])


def class_weights(counts: tuple[int, int]) -> list[float]:
    """Inverse class frequency, N / (2 * n_c); a class absent from train gets 1 (it never occurs)."""
    total = sum(counts)
    return [round(total / (2 * n), 6) if n else 1.0 for n in counts]


def member_key_ext(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is everything before the first dot of the member name."""
    key, _, ext = name.partition(".")
    return key, ext.lower()


def read_split(shards_dir: Path, split: str, kinds: tuple[str, ...], tasks: Tasks,
               part: str | None = None) -> SplitInfo:
    """Count one split from the JSON members only (tarfile seeks past the image bytes).
    kinds: ("image", "textonly") = shard-*.tar and textonly-*.tar, ("image",) = shard-*.tar.
    part: count only the examples of that val part (scores.val_part)."""
    shards = tuple(shard_files(shards_dir, split, kinds))
    labeled = skipped = 0
    counts = [0, 0]
    by_dataset: dict[str, list[int]] = {}
    head_counts = None if tasks.layout is None else heads.HeadCounts(tasks.layout)
    shard_labeled, shard_examples = [], []
    for shard in shards:
        labeled_before, examples_before = labeled, labeled + skipped
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    key, ext = member_key_ext(member.name)
                    if not member.isfile() or ext != "json":
                        continue
                    meta = json.loads(tar.extractfile(member).read())
                    if part is not None and val_part(meta.get("id", key)) != part:
                        continue
                    target = tasks.encode(meta, f"{shard}: {key}")
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
        shard_labeled.append(labeled - labeled_before)
        shard_examples.append(labeled + skipped - examples_before)
    return SplitInfo(split, shards, labeled, skipped, (counts[0], counts[1]),
                     {name: (c[0], c[1]) for name, c in sorted(by_dataset.items())}, head_counts,
                     tuple(shard_labeled), tuple(shard_examples), part)


def read_splits(shards_dir: Path, kinds: tuple[str, ...], tasks: Tasks) -> dict[str, SplitInfo]:
    splits = {split: read_split(shards_dir, split, kinds, tasks) for split in SPLITS}
    check_index(shards_dir, splits.values(), kinds)
    for info in splits.values():
        if not info.shards:
            raise TrainingInputError(f"{Path(shards_dir) / info.name}: no {' or '.join(kinds)} shard files "
                                     "(run the pack stage first: dvc repro pack)")
        if info.labeled == 0:
            raise TrainingInputError(
                f"{Path(shards_dir) / info.name}: no labeled examples for task '{', '.join(tasks.names)}' in its "
                f"{' + '.join(kinds)} shards ({len(info.shards)} file(s), {info.skipped_null} with a null target)")
    return splits


def check_index(shards_dir: Path, infos: Iterable[SplitInfo], kinds: tuple[str, ...]) -> None:
    """The shards of `kinds` read for each split are exactly those pack listed in index.json, each with
    the examples pack wrote: a missing, truncated or extra shard is one line, not a smaller evaluation."""
    index_path, infos = Path(shards_dir) / INDEX, list(infos)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not any(info.shards for info in infos):
            return   # nothing packed here at all: the caller says so
        raise TrainingInputError(f"{index_path}: not found; pack writes it beside the shards "
                                 "(dvc repro pack)") from None
    except (OSError, ValueError) as err:
        raise TrainingInputError(f"{index_path}: unreadable ({err})") from None
    prefixes = tuple(KINDS[kind].split("%")[0] for kind in kinds)
    for info in infos:
        expected = {name: n for name, n in index.items()
                    if name.split("/")[0] == info.name and name.split("/")[-1].startswith(prefixes)}
        found = {f"{info.name}/{Path(shard).name}": n for shard, n in zip(info.shards, info.shard_examples)}
        for name in sorted(expected.keys() | found.keys()):
            shard = Path(shards_dir) / name
            if name not in found:
                problem = f"missing (pack wrote it with {expected[name]} examples);"
            elif name not in expected:
                problem = f"not written by pack (not in {INDEX}); remove it or"
            elif found[name] != expected[name]:
                problem = f"{found[name]} examples, pack wrote {expected[name]} (truncated or changed);"
            else:
                continue
            raise TrainingInputError(f"{shard}: {problem} re-run pack (dvc repro pack)")


def read_diagnostic(shards_dir: Path, kinds: tuple[str, ...], tasks: Tasks) -> tuple[SplitInfo | None, str | None]:
    """The evaluation-only split this expert can score, or (None, why it cannot); (None, None)
    when there is no diagnostic split. Never trained on, never used to pick the epoch."""
    every = read_split(shards_dir, DIAGNOSTIC_SPLIT, ("image", "textonly"), tasks)
    check_index(shards_dir, [every], ("image", "textonly"))
    if not every.shards:
        return None, None
    info = read_split(shards_dir, DIAGNOSTIC_SPLIT, kinds, tasks)
    if info.labeled:
        return info, None
    if info.skipped_null:
        why = f"no {DIAGNOSTIC_SPLIT} example has a '{', '.join(tasks.names)}' label ({info.skipped_null} null)"
    else:
        why = (f"text-only suite(s) ({', '.join(every.datasets) or 'no labeled examples'}): this expert reads "
               f"{' + '.join(kinds)} shards only")
    log.warning("%s: %s; not scored", Path(shards_dir) / DIAGNOSTIC_SPLIT, why)
    return None, why


def raw_examples(shards: Iterable[str], tasks: Tasks, wanted: tuple[str, ...],
                 part: str | None = None) -> Iterator[dict[str, Any]]:
    """Labeled examples in shard order, undecoded: {id, dataset, label, <field>: bytes}; `part`: only
    those of that val part (scores.val_part)."""
    def keep(name: str) -> bool:
        return member_key_ext(name)[1] in wanted + ("json",)

    samples = wds.tarfile_samples(({"url": shard} for shard in shards), select_files=keep)
    for sample in samples:
        where = f"{sample.get('__url__')}: {sample.get('__key__')}"
        if "json" not in sample:
            raise TrainingInputError(f"{where}: example without a .json member")
        meta = json.loads(sample["json"])
        example_id = meta.get("id", sample["__key__"])
        if part is not None and val_part(example_id) != part:
            continue
        target = tasks.encode(meta, where)
        if target is None:
            continue
        example = {"id": example_id, "dataset": str(meta.get("dataset")),
                   "label": target, "where": where}
        for name in wanted:
            if name in sample:
                example[name] = sample[name]
        yield example


def interleaved(sources: list[Iterable], sizes: list[int], rng: random.Random, where: str) -> Iterator:
    """Every source read at once, each next item from a source drawn with probability proportional
    to the items it has left. Pack writes a split's examples in manifest order, so its shards hold
    one dataset after another; read shard after shard, training would see one dataset at a time."""
    iterators, left = [iter(source) for source in sources], list(sizes)
    while any(left):
        index = rng.choices(range(len(left)), weights=left)[0]
        left[index] -= 1
        item = next(iterators[index], None)
        if item is None:
            raise TrainingInputError(f"{where}: a shard has fewer labeled examples than counted "
                                     "(did the shards change while training?)")
        yield item


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

    shuffle_seed=None: the fixed shard order (evaluation). Otherwise the shards are read at once,
    interleaved (`interleaved`), and the examples shuffled per epoch (buffer of SHUFFLE_BUFFER) from
    (seed, epoch); `bucket_by_length` sorts windows of BUCKET_BATCHES batches by text length and
    shuffles the batch order.
    distributed=False reads the whole split whatever the launcher (the final metrics pass).
    """

    def __init__(self, split: SplitInfo, tasks: Tasks, fields_wanted: tuple[str, ...],
                 decode: Callable[[dict, int], dict], batch_size: int, *, shuffle_seed: int | None = None,
                 bucket_by_length: bool = False, distributed: bool = True, trace_dir: Path | None = None):
        super().__init__()
        self.split, self.tasks, self.fields_wanted, self.decode = split, tasks, fields_wanted, decode
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
            return raw_examples(shards, self.tasks, self.fields_wanted, self.split.part)
        rng = random.Random(self.shuffle_seed * 1_000_003 + self.epoch)
        sources = [raw_examples([shard], self.tasks, self.fields_wanted, self.split.part) for shard in shards]
        examples = wds.shuffle(SHUFFLE_BUFFER, initial=SHUFFLE_BUFFER, rng=rng)(
            interleaved(sources, list(self.split.shard_labeled), rng, str(Path(shards[0]).parent)))
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

