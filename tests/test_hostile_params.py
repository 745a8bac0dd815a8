"""Hostile params (issue 24, items 3 and 7): every number is checked when the stage starts (finite, in
range, with its sign; NaN never passes a comparison), and a key given twice in params.yaml is an
error in every stage. One line naming the key, exit before anything is read or written. Each case
was accepted (or ended in a traceback after an epoch) by the unchanged code.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stages import cli, ingest, pack, pilot, split, train_text, train_vision
from stages.common import REPO_ROOT, load_params, stage_command
from stages.errors import ConfigError

STAGES = {"pilot": pilot.main, "ingest": ingest.main, "split": split.main, "pack": pack.main,
          "train_text": train_text.main, "train_vision": train_vision.main}


def params_with(tmp_path: Path, group: str, key: str, value) -> Path:
    """The repo's params.yaml with one value changed (YAML: `.nan`, `.inf` as a user would write them)."""
    params = load_params(None, REPO_ROOT / "params.yaml")
    params[group][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def first_line_of_exit(stage: str, argv: list[str], capsys) -> str:
    """What a user sees: the one line `stages.cli.run` prints for a ConfigError, which exits with 2. The stage
    gets the input flags dvc.yaml's cmd passes it (stage_command without `python -m` and `--params`)."""
    inputs = stage_command(stage, REPO_ROOT / "params.yaml")[3:-2]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(stage, STAGES[stage], [*inputs, *argv])
    assert exit_info.value.code == ConfigError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


@pytest.mark.parametrize("stage, group, key, value, problem", [
    ("pack", "pack", "max_failure_rate", float("nan"), "nan is not a finite number"),
    ("pack", "pack", "max_failure_rate", 1.0, "1.0 must be < 1.0"),
    ("pack", "pack", "image_size", 100000, "100000 must be <= 4096"),
    ("pack", "pack", "examples_limit", 0, "0 must be >= 1"),
    ("pack", "pack", "ocr_min_conf", float("inf"), "inf is not a finite number"),
    ("train_text", "train", "learning_rate", 5e5, "500000.0 must be <= 1.0"),
    ("train_text", "train", "learning_rate", float("inf"), "inf is not a finite number"),
    ("train_text", "train", "learning_rate", -1, "-1.0 must be > 0.0"),
    ("train_text", "train", "weight_decay", -1, "-1.0 must be >= 0.0"),
    ("train_text", "text", "learning_rate", 0, "0.0 must be > 0.0"),
    ("train_vision", "vision", "image_size", 100000, "100000 must be <= 4096"),
    ("split", "split", "balance_tolerance", float("nan"), "nan is not a finite number"),
])
def test_numbers_out_of_range_stop_the_stage_in_one_line(tmp_path, stage, group, key, value, problem, capsys):
    message = first_line_of_exit(stage, ["--params", str(params_with(tmp_path, group, key, value))], capsys)
    assert message == f"{stage}: {group}.{key}: {problem}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("ratios, problem", [
    ({"train": float("nan"), "val": 0.1, "test": 0.1}, "split.ratios.train: nan is not a finite number"),
    ({"train": float("inf"), "val": 0.1, "test": 0.1}, "split.ratios.train: inf is not a finite number"),
    ({"train": 0.8, "val": 0.1, "test": 0.2},
     "split.ratios needs train/val/test shares in [0, 1] summing to 1, got {'train': 0.8, 'val': 0.1, 'test': 0.2}"),
])
def test_split_ratios_are_finite_shares_summing_to_one(tmp_path, ratios, problem, capsys):
    message = first_line_of_exit("split", ["--params", str(params_with(tmp_path, "split", "ratios", ratios))], capsys)
    assert message == f"split: {problem}"


def test_a_nan_head_weight_and_a_nan_flag_are_refused(tmp_path, capsys):
    params = params_with(tmp_path, "train", "head_weights", {"abuse_hate": float("nan")})
    assert first_line_of_exit("train_text", ["--params", str(params)], capsys) == \
        "train_text: train.head_weights.abuse_hate: nan is not a finite number"
    assert first_line_of_exit("pack", ["--max-failure-rate", ".nan"], capsys) == \
        "pack: pack.max_failure_rate: nan is not a finite number"
    assert first_line_of_exit("pack", ["--max-failure-rate", "nan"], capsys) == \
        "pack: pack.max_failure_rate: 'nan' is not a finite number"   # `dvc exp run -S` writes strings


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_key_given_twice_in_params_yaml_is_an_error_in_every_stage(tmp_path, stage, capsys):
    params = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    params.write_text(text + "\ntrain:\n  epochs: 1\n")   # a second `train:` group: PyYAML kept the last one
    line = text.count("\n") + 2
    first = text.splitlines().index("train:                           # shared by both experts: `dvc exp run -S "
                                    "train.epochs=3`") + 1
    message = first_line_of_exit(stage, ["--params", str(params)], capsys)
    assert message == (f"{stage}: params file {params} is not valid YAML: line {line}: duplicate key 'train' "
                       f"(first on line {first})")


def test_a_key_given_twice_inside_a_group_is_an_error_too(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("pack:\n  workers: 1\n  jpeg_quality: 90\n  workers: 2\n")
    assert first_line_of_exit("pack", ["--params", str(params)], capsys) == \
        f"pack: params file {params} is not valid YAML: line 4: duplicate key 'workers' (first on line 2)"
