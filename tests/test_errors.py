"""One error path (issue 23, item 3): every error a user can cause is a stages.errors.UserError of one
kind, stages.cli.run prints it as the one line `<stage>: <message>` and exits with the kind's code,
and no stage turns errors into SystemExit itself."""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import re
import signal
from pathlib import Path

import pytest

import stages
from stages import cli, errors, ingest, pack, pilot
from stages.common import OUTPUT_MARKER, REPO_ROOT
from stages.console import Progress
from tests.test_hostile_outputs import pack_argv, users_folder
from tests.test_pack_hostile import config_for, meme, tweet

INTERNAL = {"stages.images.ImageError"}   # a counted skip inside pack, never shown to the user as an error


def stage_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(stages.__path__, "stages."))


def test_every_error_class_in_stages_is_a_user_error_of_one_kind():
    kinds = (errors.ConfigError, errors.InputError, errors.OutputError, errors.GateError, errors.Interrupted)
    found = {}
    for name in stage_modules():
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                found[f"{name}.{cls.__name__}"] = cls
    assert {"stages.pack.PackFailed", "stages.records.ContractError", "stages.errors.OutputError"} <= set(found)
    for name, cls in sorted(found.items()):
        if name in INTERNAL or cls is errors.UserError:
            continue
        assert sum(issubclass(cls, kind) for kind in kinds) == 1, f"{name} is not a UserError of exactly one kind"
    assert issubclass(pack.PackFailed, errors.GateError) and issubclass(ingest.IngestError, errors.ConfigError)
    assert len({kind.exit_code for kind in kinds}) == len(kinds) and errors.UserError.exit_code not in \
        {kind.exit_code for kind in kinds}


def test_no_stage_raises_system_exit_itself():
    """Only stages/cli.py turns an error into an exit; argparse's own --help/usage exits are not ours."""
    calls = [f"{path.relative_to(REPO_ROOT)}:{number}" for path in sorted((REPO_ROOT / "stages").rglob("*.py"))
             if path.name != "cli.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\bSystemExit\(", line)]
    assert calls == []


def run_stage(stage: str, main, argv: list[str], capsys) -> tuple[int, str]:
    """`python -m stages.<stage>` in this process: its exit code and everything it wrote to stderr."""
    with pytest.raises(SystemExit) as exit_info:
        cli.run(stage, main, argv)
    return exit_info.value.code, capsys.readouterr().err


def test_a_bad_params_value_is_one_line_and_exit_2(tmp_path, capsys):
    code, err = run_stage("pilot", pilot.main, ["--out", str(tmp_path / "p"), "--examples-per-dataset", "0"], capsys)
    assert (code, err) == (2, "pilot: pilot.examples_per_dataset: 0 must be >= 1\n")
    assert list(tmp_path.iterdir()) == []


def test_a_broken_input_file_is_one_line_and_exit_3(tmp_path, capsys):
    olid = tmp_path / "olid"
    olid.mkdir()
    (olid / "olid-training-v1.0.tsv").write_bytes(
        b"id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n2\tna\xefve\tNOT\tNULL\tNULL\n")
    out = tmp_path / "out"
    code, err = run_stage("ingest", ingest.main, ["--dataset", f"olid={olid}", "--manifest", str(out / "m.jsonl"),
                                                  "--ocr", str(out / "o.jsonl")], capsys)
    assert code == 3 and err.count("\n") == 1
    assert err == f"ingest: {olid / 'olid-training-v1.0.tsv'}:2: not valid UTF-8: byte 0xef at column 5; " \
                  "re-save the file as UTF-8\n"
    assert not out.exists() or list(out.iterdir()) == []


def test_an_output_refused_is_one_line_and_exit_4(tmp_path, capsys):
    mine = users_folder(tmp_path / "mine")
    code, err = run_stage("pilot", pilot.main, ["--out", str(mine), "--datasets", "olid"], capsys)
    assert (code, err) == (4, f"pilot: {mine}: not replaced: it holds files pilot did not write (no {OUTPUT_MARKER} "
                              "naming pilot); give a new or empty folder, or move it away yourself\n")
    assert sorted(p.name for p in mine.iterdir()) == ["olid"]


def test_packs_failure_gate_prints_its_stats_then_one_line_and_exit_5(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "broken.jpg").write_bytes(b"not a jpeg")
    config = config_for(tmp_path, [meme("hm1", "img/broken.jpg", "a caption"), tweet("t1", "hello there")])
    argv = pack_argv(config, tmp_path / "out" / "shards", tmp_path / "out" / "stats.json")
    code, err = run_stage("pack", pack.main, [*argv, "--image-root", str(tmp_path), "--max-failure-rate", "0.1"],
                          capsys)
    last = err.rstrip("\n").splitlines()[-1]
    assert code == 5 and last.startswith("pack: failure rate 50.00% > max 10.00% (1 of 2 examples); no outputs "
                                         "written; top reasons: undecodable_image: 1 e.g. hm1 ("), err
    assert "undecodable_image" in "\n".join(err.splitlines()[:-1]), "the stats summary comes before the line"
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def interrupt_after_first(signum: int | None):
    """Progress.advance that stops the stage after its first example: Ctrl-C, or the signal `signum`."""
    def advance(self, *args, **kwargs):
        if signum is None:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)
    return advance


def test_ctrl_c_is_one_line_and_exit_130_with_nothing_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Progress, "advance", interrupt_after_first(None))
    code, err = run_stage("pilot", pilot.main, ["--out", str(tmp_path / "p"), "--datasets", "olid"], capsys)
    assert (code, err.splitlines()[-1]) == (130, "pilot: interrupted; no outputs written")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_stops_pack_like_ctrl_c(tmp_path, capsys, monkeypatch):
    config = config_for(tmp_path, [tweet(f"t{n}", f"hello {n}") for n in range(3)])
    monkeypatch.setattr(Progress, "advance", interrupt_after_first(signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    code, err = run_stage("pack", pack.main, pack_argv(config, tmp_path / "out" / "shards",
                                                       tmp_path / "out" / "stats.json"), capsys)
    assert (code, err.splitlines()[-1]) == (130, f"pack: interrupted; no outputs written (signal {signal.SIGTERM})")
    assert signal.getsignal(signal.SIGTERM) == before   # pack restores the handler it replaced
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_bug_keeps_its_traceback():
    def broken(argv):
        raise ZeroDivisionError("a bug, not a user's doing")
    with pytest.raises(ZeroDivisionError):
        cli.run("pilot", broken)


def runnable_modules() -> list[Path]:
    files = [*(REPO_ROOT / "stages").rglob("*.py"), *(REPO_ROOT / "Step_3").glob("*.py")]
    return sorted(p for p in files if '__name__ == "__main__"' in p.read_text() and p.name != "cli.py")


@pytest.mark.parametrize("path", runnable_modules(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_stage_entry_point_runs_main_through_cli_run(path):
    last = ast.parse(path.read_text()).body[-1]
    assert isinstance(last, ast.If) and "__main__" in ast.unparse(last.test)
    stage = {"__main__": "pilot", "pack_examples": "pack"}.get(path.stem, path.stem)   # its name in dvc.yaml
    assert ast.unparse(last.body[-1]) == f"cli.run({stage!r}, main)", ast.unparse(last)
