"""Benchmark the CPU thread policy (stages/threads.py) on a quiet and on a shared CPU (a script, not a test).

Prints, in one run, the training examples/s of the text and the vision expert (a) on a quiet
machine and (b) beside one CPU-bound process this script starts and stops itself, for:
  - `libraries' defaults`: STAGES_THREAD_POLICY=off (torch's threads spin while they wait),
  - `policy`: what every stage now sets (no spinning when the CPU is busy as it starts, brief
    spinning when idle, fixed count, AVX2 kernels),
  - `1 thread`: the policy with OMP_NUM_THREADS=1, for comparison.
Goals: policy under one competitor >= 0.4x its quiet speed (a fair share of two cores is 0.5x);
policy quiet >= the defaults' quiet speed.

    python benchmarks/contention.py [--shards Step_3/shards] [--seconds 20] [--experts text vision]

Each measurement is a fresh interpreter (the variables act only before torch loads), training
with the stage's own building blocks (train_bench.py's loop) for `--seconds` after 2 warm-up
steps. Without packed shards it writes synthetic ones (tests/test_training.py's writer).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

POLICIES = {
    "libraries' defaults": {"STAGES_THREAD_POLICY": "off"},
    "policy": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}
EXPERTS = ("text", "vision")


def measure(expert_name: str, shards: Path, seconds: float) -> dict:
    """Runs inside the child: examples/s of the expert's training loop."""
    sys.path.insert(0, str(REPO))
    from stages.cli import start

    start()  # this child is an entry point: the policy (unless STAGES_THREAD_POLICY=off) before torch loads
    import torch

    from benchmarks.train_bench import train_rate
    from stages import training
    from stages.training import TrainConfig

    training.quiet_libraries(verbose=False)
    torch.manual_seed(0)
    if expert_name == "text":
        from stages.train_text import SHARD_KINDS, TextConfig, build_text_expert
        expert = build_text_expert(TextConfig(), TrainConfig())
    else:
        from stages.train_vision import SHARD_KINDS, VisionConfig, build_vision_expert
        expert = build_vision_expert(VisionConfig(), TrainConfig())
    split = training.read_split(shards, "train", SHARD_KINDS, training.Tasks.read(["abuse_hate"]))
    rate = train_rate(expert, split, batch_size=16, workers=0, steps=10_000, max_seconds=seconds)
    return {"rate": rate, "threads": torch.get_num_threads(), "wait": os.environ.get("OMP_WAIT_POLICY", "-")}


def child(expert: str, policy: dict, shards: Path, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMP_", "GOMP_", "MKL_", "OPENBLAS_NUM", "ATEN_CPU", "ONEDNN_", "STAGES_THREAD"))}
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); from benchmarks.contention import measure; "
            f"print(json.dumps(measure({expert!r}, __import__('pathlib').Path({str(shards)!r}), {seconds})))")
    out = subprocess.run([sys.executable, "-c", code], env={**env, **policy}, cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def busy_process(seconds: float) -> subprocess.Popen:
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def shards_or_synthetic(shards: Path, scratch: Path) -> Path:
    if (shards / "train").is_dir():
        return shards
    sys.path.insert(0, str(REPO))
    from tests.test_training import write_shards

    print(f"{shards} has no train/ split: writing synthetic shards to {scratch}")
    write_shards(scratch, {"train": 400, "val": 8, "test": 8}, nulls=0, textonly_share=0.0)
    return scratch


def run_matrix(shards: Path, seconds: float, experts: tuple[str, ...] = EXPERTS) -> dict:
    results = {}
    for expert in experts:
        for name, policy in POLICIES.items():
            quiet = child(expert, policy, shards, seconds)
            competitor = busy_process(seconds * 20 + 120)
            try:
                busy = child(expert, policy, shards, seconds)
            finally:
                competitor.kill()
                competitor.wait()
            results[expert, name] = (quiet, busy)
            print(f"{expert:6} {name:20} quiet {quiet['rate']:6.1f}  busy {busy['rate']:6.1f} examples/s", flush=True)
    return results


def print_table(results: dict, experts: tuple[str, ...] = EXPERTS) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training examples/s, quiet vs beside one CPU-bound process ({os.cpu_count()} cores, "
                        f"load average before: {os.getloadavg()[0]:.2f})")
    for column in ("expert", "threads", "setting", "quiet", "one competitor", "competitor / quiet", "quiet / defaults"):
        table.add_column(column, justify="right")
    for (expert, name), (quiet, busy) in results.items():
        base = results[expert, "libraries' defaults"][0]["rate"]
        table.add_row(expert, str(quiet["threads"]), name, f"{quiet['rate']:.1f}", f"{busy['rate']:.1f}",
                      f"{busy['rate'] / quiet['rate']:.2f}", f"{quiet['rate'] / base:.2f}")
    console = Console()
    console.print(table)
    for expert in experts:
        quiet, busy = results[expert, "policy"]
        base = results[expert, "libraries' defaults"][0]["rate"]
        share, kept = busy["rate"] / quiet["rate"], quiet["rate"] / base
        console.print(f"{expert}: policy under one competitor {share:.2f}x quiet (goal >= 0.4: "
                      f"{'met' if share >= 0.4 else 'NOT met'}); policy quiet / defaults quiet {kept:.2f} "
                      f"(goal >= 1, within noise: {'met' if kept >= 0.95 else 'NOT met'})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, default=REPO / "Step_3/shards")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed training per measurement")
    parser.add_argument("--experts", nargs="+", choices=EXPERTS, default=list(EXPERTS))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        results = run_matrix(shards_or_synthetic(args.shards, Path(scratch)), args.seconds, tuple(args.experts))
    print_table(results, tuple(args.experts))
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
