"""Scale and resilience: a stage killed with SIGKILL (the OOM killer, a lost machine, `kill -9`)
leaves nothing where DVC reads outputs, a rerun equals an uninterrupted run byte for byte, and
the training reader deals every example to exactly one (rank, DataLoader worker).

Covered elsewhere, not repeated here: a Python-level interrupt after the first checkpoint and a
`--resume` run (test_train_text), the pack failure gate writing nothing (test_pack), atomic_file /
atomic_dir on exceptions (test_common), 2 ranks x 1-2 workers of the text train stream and a real
2-process torchrun (test_training, test_train_text).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from stages import training
from stages.common import dvc_yaml, load_params, project_path, write_json
from stages.train_vision import SHARD_KINDS as VISION_KINDS
from stages.training import IMAGE_FIELDS
from tests.test_train_text import tiny_deberta  # noqa: F401 - module fixture: a tiny DeBERTa-v2 folder
from tests.test_training import labeled_ids, write_shards

REPO = Path(__file__).resolve().parent.parent
TAXONOMY = project_path("split", "label_taxonomy")
TEMP_NAME = re.compile(r"^\.(shards|stats\.json)\..+\.tmp$")   # atomic_dir / atomic_file temp names
KILL_TIMEOUT = 120
HATE = training.Tasks.read(["abuse_hate"])


def env() -> dict[str, str]:
    # one intra-op thread: on a shared 2-core machine torch's default 2 threads run tiny models ~10x
    # slower (oversubscription); results are the same either way
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def snapshot(folder: Path, temps: bool = True) -> dict[str, tuple[bytes, int]]:
    """relative path -> (bytes, mtime_ns) of every file below `folder` (temps=False: not below
    a dot-prefixed entry of `folder`)."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and (temps or not p.relative_to(folder).parts[0].startswith("."))}


def contents(*paths: Path) -> dict[str, bytes]:
    """File bytes below each path (or of the file), keyed by name relative to its parent."""
    out = {}
    for path in paths:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        out.update({p.relative_to(path.parent).as_posix(): p.read_bytes() for p in files})
    return out


def wait_until(proc: subprocess.Popen, ready, what: str) -> None:
    """Poll until `ready()` while the stage runs."""
    deadline = time.monotonic() + KILL_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the stage exited ({proc.returncode}) before {what}: make its input larger")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill_when(proc: subprocess.Popen, ready, what: str) -> list[psutil.Process]:
    """Poll until `ready()`, then SIGKILL the stage's main process only (as the OOM killer would);
    returns its descendants as they were just before."""
    wait_until(proc, ready, what)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return children


def dvc_paths() -> list[str]:
    """Every dep and out (incl. metrics/plots files) of every stage in the repo's dvc.yaml."""
    stages = dvc_yaml(REPO)["stages"]
    paths = []
    for stage in stages.values():
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in stage.get(key) or []:
                paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def assert_invisible_to_dvc_and_git(relative: str) -> None:
    """A leftover at repo path `relative` is no DVC dep/out nor inside one, and git ignores it."""
    for path in dvc_paths():
        assert relative != path and not relative.startswith(path.rstrip("/") + "/"), (relative, path)
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", relative])
        assert ignored.returncode == 0, f"{relative} is not git-ignored"


# ------------------------------------------------------------------ pack killed mid-run


@pytest.fixture(scope="module")
def pilot_inputs(tmp_path_factory) -> Path:
    """Step 2 files and splits.json of a 60-per-dataset pilot (420 examples, ~300 images),
    written by the real stage functions in a temp folder."""
    from stages.config import build
    from stages.ingest import ingest
    from stages.pilot import PilotConfig, write_pilot
    from stages.records import load_ocr_index, read_manifest
    from stages.split import PARTS, make_splits
    from stages.taxonomy import Taxonomy

    root = tmp_path_factory.mktemp("pipeline")
    pilot = write_pilot(PilotConfig(out=root / "data" / "pilot", examples_per_dataset=60))
    manifest, ocr = root / "Step_2" / "data_manifest.jsonl", root / "Step_2" / "ocr.jsonl"
    ingest({name: pilot.out / name for name in pilot.counts}, manifest, ocr, root=root)
    config, _ = build(PARTS, load_params(None, REPO / "params.yaml"),
                      {"split.workers": 2, "split.manifest": manifest, "split.ocr": ocr})
    result = make_splits(list(read_manifest(manifest)), load_ocr_index(ocr), Taxonomy.load(TAXONOMY), config,
                         image_root=root)
    write_json(root / "Step_3" / "splits.json", result.splits)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"pack": {"image_size": 384, "image_format": "jpg", "jpeg_quality": 95,
                                               "examples_per_shard": 40, "max_failure_rate": 0.05, "workers": 2}}))
    return root


def pack_cmd(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "stages.pack", "--params", str(inputs / "params.yaml"),
            "--manifest", str(inputs / "Step_2/data_manifest.jsonl"), "--ocr", str(inputs / "Step_2/ocr.jsonl"),
            "--label-taxonomy", str(TAXONOMY), "--splits", str(inputs / "Step_3/splits.json"),
            "--image-root", str(inputs), "--output-dir", str(out / "shards"), "--stats", str(out / "stats.json")]


def run_pack(inputs: Path, out: Path) -> None:
    result = subprocess.run(pack_cmd(inputs, out), cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_pack_killed_mid_run_leaves_outputs_untouched_and_a_rerun_is_byte_identical(pilot_inputs, tmp_path):
    reference = tmp_path / "reference" / "Step_3"
    run_pack(pilot_inputs, reference)
    assert len(list((reference / "shards").rglob("*.tar"))) >= 6   # several shards per split to cut into

    out = tmp_path / "run" / "Step_3"          # a previous run's outputs, as DVC would have them
    (out / "shards" / "train").mkdir(parents=True)
    (out / "shards" / "train" / "shard-00000.tar").write_bytes(b"previous run")
    (out / "shards" / ".stage-output").write_text("pack\n")   # pack's mark on its output folder
    (out / "stats.json").write_text('{"previous": true}\n')
    before = snapshot(out, temps=False)

    def partial_shards() -> list[Path]:
        return [p for tmp in out.glob(".shards.*.tmp") for p in tmp.rglob("*.tar")]

    log = tmp_path / "killed.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(pack_cmd(pilot_inputs, out), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)
        try:
            workers = kill_when(proc, lambda: len(partial_shards()) >= 3, "3 partial shards were written")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    # the pool's workers do not outlive their parent (they fail on the broken result pipe)
    assert len(workers) >= 2
    _, alive = psutil.wait_procs(workers, timeout=20)
    for orphan in alive:
        orphan.kill()
    assert not alive, f"pack workers outlived the killed stage: {[p.pid for p in alive]}"

    # the outputs DVC tracks are exactly as the previous run left them
    assert snapshot(out, temps=False) == before
    leftovers = sorted(p.name for p in out.iterdir() if p.name not in ("shards", "stats.json"))
    assert leftovers and all(TEMP_NAME.match(name) for name in leftovers), leftovers
    for name in leftovers:   # dot-prefixed temps beside the outputs: DVC and git never look at them
        assert_invisible_to_dvc_and_git(f"Step_3/{name}")
    partial = snapshot(out / leftovers[0])

    run_pack(pilot_inputs, out)
    assert contents(out / "shards", out / "stats.json") == contents(reference / "shards", reference / "stats.json")
    # the rerun wrote into a temp dir of its own: the dead run's one is unchanged (today: left in
    # place, never cleaned) or removed, never reused
    assert not (out / leftovers[0]).exists() or snapshot(out / leftovers[0]) == partial


def ctrl_c_when(cmd: list[str], log: Path, ready, what: str) -> str:
    """Run a stage, press Ctrl-C (SIGINT to its whole process group, as a terminal does) once `ready()`;
    the stage must exit with 130. Returns its output."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until(proc, ready, what)
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=120) == 130
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return log.read_text()


def test_pack_interrupted_with_ctrl_c_says_so_in_one_line_and_writes_nothing(pilot_inputs, tmp_path):
    out = tmp_path / "run" / "Step_3"
    output = ctrl_c_when(pack_cmd(pilot_inputs, out), tmp_path / "pack.log",
                         lambda: any(tmp.rglob("*.tar") for tmp in out.glob(".shards.*.tmp")), "the first shard")
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert output.splitlines()[-1] == "pack: interrupted; no outputs written"
    assert sorted(out.rglob("*")) == []   # no shards, no stats, no temporary leftovers


# ------------------------------------------------------------------ train_text killed


@pytest.fixture(scope="module")
def text_job(tmp_path_factory, tiny_deberta):  # noqa: F811
    """Tiny shards + params for `python -m stages.train_text`, and the uninterrupted run's outputs."""
    root = tmp_path_factory.mktemp("text_job")
    write_shards(root / "shards", {"train": 80, "val": 16, "test": 16}, nulls=2, per_shard=25)
    (root / "params.yaml").write_text(yaml.safe_dump({
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "seed": 0},
        "text": {"model": str(tiny_deberta), "max_length": 32}}))
    reference = root / "reference"
    result = subprocess.run(text_cmd(root, reference), cwd=REPO, env=env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, reference


def text_outputs(out: Path) -> dict[str, Path]:
    return {"model": out / "models/text_expert", "metrics": out / "metrics/text.json",
            "live": out / "live/text", "predictions": out / "predictions/text.jsonl"}


def text_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    paths = text_outputs(out)
    return [sys.executable, "-m", "stages.train_text", "--params", str(root / "params.yaml"),
            "--shards", str(root / "shards"), "--out-model", str(paths["model"]), "--metrics", str(paths["metrics"]),
            "--live-dir", str(paths["live"]), "--predictions", str(paths["predictions"]),
            "--scratch", str(out / "scratch/text"), *extra]


def kill_text_run(root: Path, out: Path, ready, what: str) -> None:
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen(text_cmd(root, out, "--trace-ids", str(out / "trace")), cwd=REPO, env=env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            kill_when(proc, ready, what)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    for path in text_outputs(out).values():
        assert not path.exists(), f"a killed run left {path}"
    for folder in (out / "models", out / "live", out / "metrics", out / "predictions"):
        if folder.exists():   # at most dot-prefixed temps of atomic_file / atomic_dir
            assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in folder.iterdir())


def rerun_matches_reference(root: Path, out: Path, reference: Path, *extra: str) -> subprocess.CompletedProcess:
    result = subprocess.run(text_cmd(root, out, *extra), cwd=REPO, env=env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ref = text_outputs(reference)
    for name in ("metrics", "predictions"):
        assert text_outputs(out)[name].read_bytes() == ref[name].read_bytes(), name
    assert (text_outputs(out)["model"] / "model.safetensors").read_bytes() == \
        (ref["model"] / "model.safetensors").read_bytes()
    assert not (out / "scratch/text/train_text-run").exists()   # checkpoints removed after success
    return result


def test_train_text_killed_before_the_first_checkpoint_then_resume_trains_from_the_start(text_job, tmp_path):
    root, reference = text_job
    out = tmp_path / "run"
    checkpoints = out / "scratch/text/train_text-run/checkpoints"
    first_batch = out / "trace" / "train-epoch0-rank0-worker0.txt"
    kill_text_run(root, out, lambda: first_batch.is_file() and first_batch.stat().st_size > 0,
                  "the first training batch")
    assert not list(checkpoints.glob("checkpoint-*")), "killed too late: a checkpoint was already written"
    result = rerun_matches_reference(root, out, reference, "--resume")
    assert "no checkpoint" in result.stdout + result.stderr   # --resume with nothing to resume says so and starts over


def test_train_text_killed_after_a_checkpoint_then_a_plain_rerun_equals_an_uninterrupted_run(text_job, tmp_path):
    root, reference = text_job
    out = tmp_path / "run"
    checkpoints = out / "scratch/text/train_text-run/checkpoints"
    second_epoch = out / "trace" / "train-epoch1-rank0-worker0.txt"
    kill_text_run(root, out, lambda: second_epoch.is_file() and second_epoch.stat().st_size > 0,
                  "the second epoch (after the first checkpoint)")
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == ["checkpoint-20"]   # 80 / 4 steps
    rerun_matches_reference(root, out, reference)   # what `dvc repro` runs: no --resume, scratch wiped


# ------------------------------------------------------------------ many processes: who reads what


@pytest.fixture(scope="module")
def rank_shards(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("rank_shards")
    return root, write_shards(root, {"train": 47, "val": 29, "test": 4}, nulls=3, per_shard=6, textonly_share=0.3)


def worker_tagged(raw: dict, epoch: int) -> dict:
    info = torch.utils.data.get_worker_info()
    return {"id": raw["id"], "worker": -1 if info is None else info.id}


@pytest.mark.parametrize("reader", ["text_eval", "vision_train"])
def test_two_ranks_times_two_workers_read_disjoint_shares_covering_the_split(rank_shards, monkeypatch, reader):
    """The readers the Trainer uses besides the text train stream (test_training covers that): the
    per-epoch validation stream of the text expert (every example, unshuffled) and the vision train
    stream (image shards only). With WORLD_SIZE=2 and 2 DataLoader workers per rank, the four
    (rank, worker) shares are pairwise disjoint apart from one pad example, each rank gets
    ceil(N/2), and together they are the whole split."""
    root, written = rank_shards
    if reader == "text_eval":
        split, kinds, fields, seed, expected = "val", ("image", "textonly"), ("txt",), None, labeled_ids(written["val"])
    else:
        split, kinds, fields, seed = "train", VISION_KINDS, IMAGE_FIELDS, 0
        expected = labeled_ids(written["train"], images_only=True)
    info = training.read_split(root, split, kinds, HATE)
    assert info.labeled == len(expected) and info.labeled % 2 == 1   # odd: one rank gets a pad example
    shares: dict[tuple[int, int], list[str]] = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = training.ShardStream(info, HATE, fields, worker_tagged, batch_size=3, shuffle_seed=seed)
        loader = torch.utils.data.DataLoader(stream, batch_size=3, num_workers=2, collate_fn=list)
        for batch in loader:
            for example in batch:
                shares.setdefault((rank, example["worker"]), []).append(example["id"])
        assert sum(len(ids) for (r, _), ids in shares.items() if r == rank) == len(stream) == -(-info.labeled // 2)
    assert set(shares) == {(0, 0), (0, 1), (1, 0), (1, 1)}   # both workers of both ranks got data
    everything = [i for ids in shares.values() for i in ids]
    assert set(everything) == expected
    assert len(everything) == len(expected) + 1   # exactly one pad, the rest read once


def test_train_text_interrupted_with_ctrl_c_names_the_checkpoint_kept_for_resume(text_job, tmp_path):
    root, reference = text_job
    out = tmp_path / "run"
    second_epoch = out / "trace" / "train-epoch1-rank0-worker0.txt"
    output = ctrl_c_when(text_cmd(root, out, "--trace-ids", str(out / "trace")), tmp_path / "train.log",
                         lambda: second_epoch.is_file() and second_epoch.stat().st_size > 0,
                         "the second epoch (after the first checkpoint)")
    checkpoint = out / "scratch/text/train_text-run/checkpoints/checkpoint-20"
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert output.splitlines()[-1] == ("train_text: interrupted; no outputs written; "
                                       f"checkpoint kept for --resume: {checkpoint}")
    assert checkpoint.is_dir()
    for path in text_outputs(out).values():
        assert not path.exists(), f"an interrupted run left {path}"
