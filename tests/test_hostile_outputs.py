"""Output paths a user gets wrong (issue 24, items 1 and 7): a stage replaces only a folder it owns
(absent, empty, or marked with its own `.stage-output`, or its outs in dvc.yaml), never one holding
an input or the repo root; scratch space is a folder of its own inside the one given; an output
that cannot be written is one line naming it. Each test first reproduced the data loss or the
traceback on the unchanged code.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stages import ingest as ingest_stage
from stages import pack as pack_stage
from stages import pilot as pilot_stage
from stages.common import OUTPUT_MARKER, REPO_ROOT, OutputError, atomic_dir, check_owned
from tests.test_pack_hostile import config_for, tweet


def inputs(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    return config_for(folder, [tweet("t1", "hello there")])


def pack_argv(config, output_dir: Path, stats: Path) -> list[str]:
    """The pack command line of `config_for`'s inputs, with the given outputs."""
    return ["--manifest", str(config.manifest), "--ocr", str(config.ocr), "--splits", str(config.splits),
            "--label-taxonomy", str(config.label_taxonomy), "--output-dir", str(output_dir), "--stats", str(stats),
            "--workers", "1", "--image-dirs", str(config.manifest.parent)]


def users_folder(folder: Path) -> Path:
    """A folder of the user's own files (a release, the taxonomy, ...)."""
    (folder / "olid").mkdir(parents=True)
    (folder / "olid" / "olid-training-v1.0.tsv").write_text("id\ttweet\n1\tmine\n")
    return folder


def run_main(main, argv: list[str]) -> str:
    """The OutputError's message (stages.cli.run prints it after `<stage>: `)."""
    with pytest.raises(OutputError) as refused:
        main(argv)
    return str(refused.value)


def test_pack_into_a_folder_of_user_files_is_refused_in_one_line_and_touches_nothing(tmp_path):
    config = inputs(tmp_path / "in")
    datasets = users_folder(tmp_path / "Datasets")
    message = run_main(pack_stage.main, pack_argv(config, datasets, tmp_path / "stats.json"))
    assert message == (f"{datasets}: not replaced: it holds files pack did not write (no {OUTPUT_MARKER} "
                       "naming pack); give a new or empty folder, or move it away yourself")
    assert (datasets / "olid" / "olid-training-v1.0.tsv").read_text() == "id\ttweet\n1\tmine\n"
    assert sorted(p.name for p in datasets.iterdir()) == ["olid"] and not (tmp_path / "stats.json").exists()


def test_an_output_holding_an_input_is_refused_even_when_pack_wrote_it(tmp_path):
    config = inputs(tmp_path / "in")
    (tmp_path / "in" / OUTPUT_MARKER).write_text("pack\n")   # even a folder marked as pack's own
    message = run_main(pack_stage.main, pack_argv(config, tmp_path / "in", tmp_path / "stats.json"))
    assert message == (f"{tmp_path / 'in'}: not used as an output: it contains the input "
                       f"{config.manifest}; choose another path")
    assert config.manifest.is_file()
    message = run_main(pack_stage.main, pack_argv(config, tmp_path / "out", config.splits))   # stats onto an input
    assert message == (f"{config.splits}: not used as an output: it is the input {config.splits}; "
                       "choose another path")


def test_the_repo_root_and_its_parents_are_never_an_output_folder():
    for path in (REPO_ROOT, REPO_ROOT.parent):
        with pytest.raises(OutputError, match=f"^{path}: not used as an output: it (is|contains) the repo root"):
            with atomic_dir(path, "pilot"):
                pass
    assert (REPO_ROOT / "stages" / "common.py").is_file()


def test_pack_replaces_its_own_previous_output_and_an_empty_folder(tmp_path):
    config = inputs(tmp_path / "in")
    out, stats = tmp_path / "shards", tmp_path / "stats.json"
    out.mkdir()
    for _ in range(2):   # empty, then its own (marked) output
        pack_stage.main(pack_argv(config, out, stats))
        assert (out / OUTPUT_MARKER).read_text() == "pack\n"
        assert sorted(p.name for p in (out / "train").iterdir()) == ["textonly-00000.tar"]
    (out / "note.txt").write_text("a marker does not make the folder a dumping ground: it is replaced whole")
    pack_stage.main(pack_argv(config, out, stats))
    assert not (out / "note.txt").exists()


def test_a_folder_marked_by_another_stage_is_not_replaced(tmp_path):
    pilot_out = tmp_path / "pilot"
    pilot_stage.main(["--out", str(pilot_out), "--examples-per-dataset", "1", "--datasets", "olid"])
    config = inputs(tmp_path / "in")
    message = run_main(pack_stage.main, pack_argv(config, pilot_out, tmp_path / "stats.json"))
    assert message == (f"{pilot_out}: not replaced: it holds the output of stage 'pilot' (no {OUTPUT_MARKER} "
                       "naming pack); give a new or empty folder, or move it away yourself")
    assert (pilot_out / "olid").is_dir()


def test_train_scratch_is_a_folder_of_its_own_inside_the_given_one(tmp_path):
    from transformers import TrainingArguments

    from stages.training.trainer import fresh_scratch

    scratch = users_folder(tmp_path / "ss")
    args = TrainingArguments(output_dir=str(scratch / "train_text-run" / "checkpoints"), use_cpu=True,
                             report_to="none")
    run_dir = scratch / "train_text-run"
    assert fresh_scratch(run_dir, "train_text", args, resume=False) is None
    assert sorted(p.name for p in scratch.iterdir()) == ["olid", "train_text-run"]
    assert (run_dir / OUTPUT_MARKER).read_text() == "train_text\n"
    (run_dir / "checkpoints").mkdir()
    fresh_scratch(run_dir, "train_text", args, resume=False)   # its own run folder: made anew
    assert sorted(p.name for p in run_dir.iterdir()) == [OUTPUT_MARKER]
    foreign = users_folder(tmp_path / "other") / "train_text-run"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="it holds files train_text did not write"):
        fresh_scratch(foreign, "train_text", args, resume=False)
    assert (foreign / "keep.txt").read_text() == "mine"


def test_the_live_dir_of_a_fresh_clone_is_accepted_as_the_stage_s_dvc_outs():
    """Step_4/live/text is no DVC out, but what it holds is (plots in git, metrics.json and params.yaml
    from the DVC cache), so a direct run after a clone replaces it; another stage's may not."""
    live = REPO_ROOT / "Step_4" / "live" / "text"
    if not live.is_dir():
        pytest.skip("no Step_4/live/text in this checkout")
    check_owned(live, "train_text")
    with pytest.raises(OutputError, match="not replaced: it holds (files train_vision did not write|the output of "
                                          "stage 'train_text')"):   # a fresh clone | after a dvc repro here
        check_owned(live, "train_vision")


def test_a_folder_dvc_emptied_before_a_rerun_is_still_the_stage_s(tmp_path, monkeypatch):
    """`dvc repro` removes a stage's outs before running it and leaves its .gitignore (one `/<out>`
    line per out) alone in the folder: that folder is the stage's; a .gitignore naming anything else
    is the user's."""
    from stages import common

    monkeypatch.setattr(common, "REPO_ROOT", tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages:\n  train_text:\n    outs: [live/metrics.json, live/params.yaml]\n")
    live = tmp_path / "live"
    live.mkdir()
    (live / ".gitignore").write_text("/metrics.json\n/params.yaml\n")
    check_owned(live, "train_text")
    with pytest.raises(OutputError, match="did not write"):
        check_owned(live, "train_vision")
    (live / ".gitignore").write_text("/metrics.json\n/my_notes.txt\n")
    with pytest.raises(OutputError, match="did not write"):
        check_owned(live, "train_text")


def write_dvc_project(root: Path) -> None:
    """A git + DVC project: this repo's stages/ and a one-stage dvc.yaml (the pilot, one dataset)."""
    shutil.copytree(REPO_ROOT / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text("pilot:\n  out: data/pilot\n  examples_per_dataset: 2\n")
    (root / "dvc.yaml").write_text("stages:\n  pilot:\n    cmd: python -m stages.pilot --datasets olid\n"
                                   "    deps: [stages]\n    params: [pilot]\n    outs: [data/pilot]\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, check=True)


def test_dvc_repro_and_checkout_keep_the_marker_and_a_direct_run_accepts_the_restored_folder(tmp_path):
    write_dvc_project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    out = tmp_path / "data" / "pilot"
    assert run("dvc", "repro", "-q").returncode == 0
    assert (out / OUTPUT_MARKER).read_text() == "pilot\n"
    shutil.rmtree(out)
    assert run("dvc", "checkout", "-q").returncode == 0
    assert (out / OUTPUT_MARKER).read_text() == "pilot\n"   # part of the cached out, restored with it
    (out / OUTPUT_MARKER).unlink()   # an out cached before markers existed: still the stage's (dvc.yaml)
    direct = run(sys.executable, "-m", "stages.pilot", "--datasets", "olid")
    assert direct.returncode == 0, direct.stderr
    assert run("dvc", "status", "-q").returncode == 0 and (out / OUTPUT_MARKER).is_file()
    users_folder(tmp_path / "mine")
    refused = run(sys.executable, "-m", "stages.pilot", "--datasets", "olid", "--out", "mine")
    assert refused.returncode == OutputError.exit_code and refused.stderr.strip().splitlines() == [
        f"pilot: mine: not replaced: it holds files pilot did not write (no {OUTPUT_MARKER} naming pilot); "
        "give a new or empty folder, or move it away yourself"]
    assert (tmp_path / "mine" / "olid" / "olid-training-v1.0.tsv").is_file()


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """A small real filesystem (disk full, read-only); skipped where mounting is not allowed."""
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_or_a_read_only_output_is_one_line_naming_the_path(tmp_path):
    """Both were an OSError traceback (ENOSPC, EROFS); nothing partial is left either way."""
    release = tmp_path / "pilot"
    pilot_stage.main(["--out", str(release), "--examples-per-dataset", "2", "--datasets", "olid"])
    with mounted_tmpfs(tmp_path / "full", "size=64k") as full:
        with contextlib.suppress(OSError), open(full / "filler", "wb") as filler:
            while True:
                filler.write(b"x" * 4096)
                filler.flush()
        message = run_main(pilot_stage.main, ["--out", str(full / "pilot"), "--examples-per-dataset", "2",
                                              "--datasets", "olid"])
        assert message == f"{full / 'pilot'}: cannot write this output: No space left on device"
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
    with mounted_tmpfs(tmp_path / "ro", "ro") as read_only:
        message = run_main(ingest_stage.main, ["--dataset", f"olid={release / 'olid'}", "--manifest",
                                               str(read_only / "m.jsonl"), "--ocr", str(read_only / "o.jsonl")])
        assert message == f"{read_only / 'm.jsonl'}: cannot write this output: Read-only file system"
