"""CPU thread policy of every stage, applied by each entry point (stages/cli.py: start) before
torch, numpy or tokenizers load their OpenMP / MKL / Rust thread pools (they read these variables
once, at load time).

Why: torch's OpenMP threads spin while they wait for each other. On a CPU shared with one other
busy process a spinning thread burns the time slice its partner needs, and training runs up to
~14x slower (benchmarks/contention.py). So waiting threads sleep at once when the CPU is busy as
the stage starts, and spin only briefly when it is idle (WAIT_* below). A fixed thread count with
the runtimes' dynamic adjustment switched off keeps the order of floating-point reductions, and so
the results, the same whatever else runs.

The count: the cores this process may use (CPU affinity, containers), divided among the local
processes of a torchrun / accelerate launch (LOCAL_WORLD_SIZE), at least 1. DataLoader workers
run one thread each (torch sets that in every worker) and the tokenizers' own pool is off, so
neither multiplies it. A variable the user has set always wins: `OMP_NUM_THREADS=1 dvc repro`.
A variable this policy set in a parent process (pytest, a benchmark launching torchrun) is not the
user's: STAGES_THREAD_POLICY_SET records what was set, and a child decides those afresh.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Mapping

COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (respects affinity masks and cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_count(environ: Mapping[str, str], cores: int) -> int:
    """The user's OMP_NUM_THREADS if set, else the cores shared among the local processes."""
    if environ.get("OMP_NUM_THREADS", "").isdigit() and int(environ["OMP_NUM_THREADS"]) > 0:
        return int(environ["OMP_NUM_THREADS"])
    local_procs = int(environ["LOCAL_WORLD_SIZE"]) if environ.get("LOCAL_WORLD_SIZE", "").isdigit() else 1
    return max(1, cores // max(1, local_procs))


# x86 kernels of one instruction set everywhere: torch's own (ATen), oneDNN's (convolutions) and
# MKL's (matrix products) AVX-512 code sums in another order than their AVX2 code, so a pipeline
# run on an AVX-512 host and on an AVX2-only host would give different models. AVX2 is on every
# x86 server of the last decade; on AMD's double-pumped AVX-512 it costs little (see README).
# MKL's STRICT mode: Intel documents bitwise-identical results whatever the inputs' memory
# alignment only with it. Without it, one Sapphire Rapids host trained the pilot's text expert to
# two different models (8th digit, from step 2 on) at different times in the same environment;
# with it, every run there was identical (cause not pinned down: a plain matmul test showed none).
X86_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2,STRICT"}


# How a waiting thread waits. Spinning is what costs ~14x beside a busy process; sleeping at once
# (PASSIVE) costs the vision expert ~20% on an idle machine (wake-up latency of its many small
# parallel regions). So: when other processes already use the CPU, sleep at once; on an idle
# machine, spin briefly (~tens of microseconds) and then sleep. The wait policy never changes
# results, only speed.
BUSY_CORES = 0.5              # other processes using this many cores or more: no spinning
SPIN_WHEN_IDLE = "10000"      # libgomp spin iterations before a waiting thread sleeps
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def wait_policy(busy_cores: float) -> dict[str, str]:
    return {"OMP_WAIT_POLICY": "PASSIVE"} if busy_cores >= BUSY_CORES else {"GOMP_SPINCOUNT": SPIN_WHEN_IDLE}


def cpu_used_by_others(seconds: float = 0.2) -> float:
    """Cores' worth of CPU that other processes use right now: /proc/stat over `seconds` while
    this process sleeps (0 where there is no /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(value) for value in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + ticks[4]   # all, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return (total - (idle1 - idle0)) / total * (os.cpu_count() or 1) if total > 0 else 0.0


def policy(environ: Mapping[str, str], cores: int, machine: str | None = None,
           busy_cores: float = 0.0) -> dict[str, str]:
    """The variables to set: only those the user has not set already (a wait variable of the
    user's replaces the whole wait policy)."""
    count = str(thread_count(environ, cores))
    x86 = (machine or platform.machine()).lower() in ("x86_64", "amd64")
    user_waits = any(name in environ for name in WAIT_VARIABLES)
    wanted = {
        **(X86_ISA if x86 else {}),
        **{name: count for name in COUNT_VARIABLES},
        **({} if user_waits else wait_policy(busy_cores)),
        "OMP_DYNAMIC": "FALSE",           # libgomp would pick fewer threads from the load average
        "MKL_DYNAMIC": "FALSE",           # MKL likewise may use fewer threads than asked
        "TOKENIZERS_PARALLELISM": "false",   # one example at a time; no fork warning in workers
    }
    return {name: value for name, value in wanted.items() if name not in environ}


MARKER = "STAGES_THREAD_POLICY_SET"   # name=value;... of what the policy set (inherited by children)


def users_own(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without the variables a parent's policy set (same value as it recorded);
    a variable changed since, e.g. `env OMP_NUM_THREADS=1` for a child, is the user's again."""
    recorded = dict(item.split("=", 1) for item in environ.get(MARKER, "").split(";") if "=" in item)
    return {k: v for k, v in environ.items() if k != MARKER and recorded.get(k) != v}


def apply_thread_policy() -> dict[str, str]:
    """Set the policy's variables in this process (inherited by DataLoader workers and
    subprocesses). Returns what was set. STAGES_THREAD_POLICY=off leaves the environment alone
    (the libraries' own defaults; benchmarks/contention.py compares the two)."""
    if os.environ.get("STAGES_THREAD_POLICY", "").lower() == "off":
        return {}
    environ = users_own(os.environ)
    for name in set(os.environ) - set(environ):
        del os.environ[name]             # a parent's choice (and the marker): decided again below
    user_waits = any(name in environ for name in WAIT_VARIABLES)
    chosen = policy(environ, usable_cores(), busy_cores=0.0 if user_waits else cpu_used_by_others())
    os.environ.update(chosen)
    os.environ[MARKER] = ";".join(f"{k}={v}" for k, v in sorted(chosen.items()))
    return chosen


def pin_torch_threads() -> int:
    """Make torch use the policy's count even when it was imported before the policy applied (a
    notebook, a test session); the wait policy then stays whatever the runtime started with."""
    import torch

    count = thread_count(os.environ, usable_cores())
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
