"""The CPU thread policy (stages/threads.py): what it sets, that it is in force before torch loads,
that the user's own settings win, and that training gives byte-identical outputs whether or not
another CPU-bound process competes for the cores and whatever train.num_workers is."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages import threads
from tests.test_training import write_shards

REPO = Path(__file__).resolve().parent.parent
POLICY_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                    "OMP_DYNAMIC",
                    "MKL_DYNAMIC", "TOKENIZERS_PARALLELISM", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
                    "LOCAL_WORLD_SIZE", threads.MARKER)


def test_policy_fixes_the_count_sleeps_when_busy_and_pins_x86_kernels():
    chosen = threads.policy({}, cores=8, machine="x86_64", busy_cores=1.0)
    assert chosen["OMP_NUM_THREADS"] == chosen["MKL_NUM_THREADS"] == chosen["OPENBLAS_NUM_THREADS"] == "8"
    assert chosen["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in chosen
    idle = threads.policy({}, cores=8, machine="x86_64", busy_cores=0.1)
    assert idle["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in idle
    assert {k: v for k, v in idle.items() if k != "GOMP_SPINCOUNT"} == \
        {k: v for k, v in chosen.items() if k != "OMP_WAIT_POLICY"}    # nothing else depends on the load
    assert chosen["OMP_DYNAMIC"] == chosen["MKL_DYNAMIC"] == "FALSE"
    assert chosen["TOKENIZERS_PARALLELISM"] == "false"
    kernels = (chosen["ATEN_CPU_CAPABILITY"], chosen["ONEDNN_MAX_CPU_ISA"], chosen["MKL_CBWR"])
    assert kernels == ("avx2", "AVX2", "AVX2,STRICT")
    assert "ATEN_CPU_CAPABILITY" not in threads.policy({}, cores=8, machine="aarch64")


def test_local_processes_share_the_cores_and_the_user_setting_wins():
    assert threads.policy({"LOCAL_WORLD_SIZE": "4"}, cores=8)["OMP_NUM_THREADS"] == "2"
    assert threads.policy({"LOCAL_WORLD_SIZE": "4"}, cores=2)["OMP_NUM_THREADS"] == "1"
    user = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    chosen = threads.policy(user, cores=8, busy_cores=2.0)
    assert not {"OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(chosen)
    assert chosen["MKL_NUM_THREADS"] == "3"        # the user's count for every library


def test_a_child_decides_again_what_a_parent_policy_set_but_keeps_what_the_user_changed():
    parent = threads.policy({}, cores=2, machine="x86_64", busy_cores=0.0)
    marker = ";".join(f"{k}={v}" for k, v in parent.items())
    inherited = {**parent, threads.MARKER: marker}
    assert threads.users_own(inherited) == {}
    launched = threads.users_own({**inherited, "LOCAL_WORLD_SIZE": "2"})      # torchrun from a test
    assert threads.policy(launched, cores=2)["OMP_NUM_THREADS"] == "1"
    changed = threads.users_own({**inherited, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"})
    assert changed == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.users_own({"OMP_NUM_THREADS": "2"}) == {"OMP_NUM_THREADS": "2"}   # no marker: the user's


def probe(extra_env: dict[str, str]) -> list[str]:
    """What torch gets in a fresh entry point (`python -m stages.cli` starts as every stage does)."""
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARIABLES}
    out = subprocess.run([sys.executable, "-m", "stages.cli"], cwd=REPO, env={**env, **extra_env}, check=True,
                         capture_output=True, text=True).stdout
    return out.split()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs CPU affinity")
def test_policy_is_in_force_before_torch_loads():
    cores = len(os.sched_getaffinity(0))
    count, capability, wait, spin = probe({})
    assert int(count) == cores and (wait, spin) in (("PASSIVE", "-"), ("-", "10000"))
    competitor = busy_process()
    try:
        assert probe({})[2:] == ["PASSIVE", "-"]     # another process is using the CPU: never spin
    finally:
        competitor.kill()
        competitor.wait()
    if threads.platform.machine().lower() in ("x86_64", "amd64"):
        assert capability in ("AVX2", "DEFAULT")        # never AVX512, whatever the host has
    assert probe({"OMP_NUM_THREADS": "1"})[0] == "1"
    assert int(probe({"LOCAL_WORLD_SIZE": "2"})[0]) == max(1, cores // 2)
    inherited = {"OMP_NUM_THREADS": str(cores), threads.MARKER: f"OMP_NUM_THREADS={cores}"}
    assert int(probe({**inherited, "LOCAL_WORLD_SIZE": "2"})[0]) == max(1, cores // 2)   # a parent's, not the user's


# ------------------------------------------------------------- entry points, and only they

STAGE_MODULES = ("stages.pilot", "stages.ingest", "stages.split", "stages.pack", "stages.train_text",
                 "stages.train_vision", "stages.training", "stages.heads", "stages.config")


def test_importing_the_stages_changes_nothing_in_the_process():
    env = {k: v for k, v in os.environ.items() if k not in POLICY_VARIABLES + (threads.MARKER,)}
    code = (f"import os; before = dict(os.environ); import {', '.join(('stages',) + STAGE_MODULES)}; "
            "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def is_entry_guard(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":` whose body calls stages.cli.start()."""
    return (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
            and any(isinstance(n, ast.Call) and ast.unparse(n.func) == "start" for n in ast.walk(node)))


def runnable_files() -> list[Path]:
    files = [*REPO.glob("stages/**/*.py"), *REPO.glob("benchmarks/*.py"), *REPO.glob("Step_3/*.py")]
    return sorted(p for p in files if '__name__ == "__main__"' in p.read_text() and p.name != "cli.py")


@pytest.mark.parametrize("path", runnable_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_entry_point_applies_the_policy_before_any_library_loads(path):
    """Above the guard only the standard library (and sys.path set-up): torch, numpy and the
    stages' own modules, which may load them, come after it."""
    for node in ast.parse(path.read_text()).body:
        if is_entry_guard(node):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            outside = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names | {"__future__"}]
            assert not outside, f"{path.name} imports {outside} before applying the thread policy"
    pytest.fail(f"{path.name} has a __main__ block but never calls stages.cli.start() above its imports")


# ------------------------------------------------------------- determinism under contention

BUSY_SECONDS = 600   # upper bound: the test kills it as soon as the second run ends


def busy_process() -> subprocess.Popen:
    """One CPU-bound competitor (a Python busy loop), bounded in time."""
    code = f"import time\nend = time.monotonic() + {BUSY_SECONDS}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every file the run wrote (model, metrics, predictions, DVCLive dir), by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def other_lines(text: bytes, leave_out: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if leave_out not in line]


def train(expert: str, shards: Path, out: Path, num_workers: int):
    from stages.train_text import TextConfig, train_text
    from stages.train_vision import VisionConfig, train_vision
    from stages.training import ExpertPaths, TrainConfig

    paths = ExpertPaths(shards, out / "model", out / "metrics.json", out / "live", out / "predictions.jsonl",
                        out / "scratch")
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3, num_workers=num_workers)
    if expert == "text":
        train_text(paths, cfg, TextConfig(max_length=32))      # the offline default MiniLM
    else:
        train_vision(paths, cfg, VisionConfig())               # the offline default efficientnet_lite0
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("expert", ["text", "vision"])
def test_training_is_byte_identical_beside_a_busy_process_and_with_workers(expert, tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": 32, "val": 12, "test": 12}, nulls=2, textonly_share=0.0, seed=3)
    run_dir = tmp_path / "run"          # both runs write to the same paths, as `dvc repro` does
    train(expert, shards, run_dir, num_workers=0)
    alone = output_bytes(run_dir)
    shutil.rmtree(run_dir)
    competitor = busy_process()
    try:
        train(expert, shards, run_dir, num_workers=2)
        assert competitor.poll() is None, "the competing process ended before the second run did"
    finally:
        competitor.kill()
        competitor.wait()
    crowded = output_bytes(run_dir)
    # DVCLive's params.yaml records the Trainer's arguments, dataloader_num_workers among them
    assert other_lines(alone.pop("live/params.yaml"), b"num_workers") == \
        other_lines(crowded.pop("live/params.yaml"), b"num_workers")
    assert sorted(alone) == sorted(crowded)
    assert {"metrics.json", "predictions.jsonl", "model/model.safetensors", "live/metrics.json"} <= set(alone)
    for name in alone:
        assert alone[name] == crowded[name], f"{expert}: {name} differs between the quiet and the crowded run"
