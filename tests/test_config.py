"""stages/config.py: every stage is configured one way, from params.yaml and generated flags.

Per stage: a misspelled key and a bad value each stop the stage at start with one line naming the
key, a non-zero exit code and nothing written; `--help` documents every option with its default;
the training stages take command-line overrides like the others."""
from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from stages import config, training
from stages.common import REPO_ROOT, stage_command
from stages.config import ConfigError, Part, build, parse
from stages.pack import PackConfig
from stages.train_text import TextConfig

STAGES = ("pilot", "ingest", "split", "pack", "train_text", "train_vision", "fuse")
# Every path a stage may write, redirected into the test's folder.
OUTPUT_KEYS = {"pilot": ["out"], "ingest": ["manifest", "ocr"], "split": ["splits", "report"],
               "pack": ["output_dir", "stats"],
               "text": ["out_model", "metrics", "live_dir", "predictions", "scratch"],
               "vision": ["out_model", "metrics", "live_dir", "predictions", "scratch"],
               "fuse": ["predictions", "metrics", "report"]}

# The inputs pack reads from other stages: flags (dvc.yaml's cmd), never params.yaml keys.
PACK_INPUTS = {"pack.manifest": "m.jsonl", "pack.ocr": "o.jsonl", "pack.label_taxonomy": "t.json",
               "pack.splits": "s.json"}

MISSPELLED = [   # stage, group, misspelled key
    ("pilot", "pilot", "exmples_per_dataset"),
    ("ingest", "ingest", "manifets"),
    ("split", "split", "sed"),
    ("pack", "pack", "image_sise"),
    ("train_text", "train", "epoch"),
    ("train_text", "text", "max_len"),
    ("train_vision", "vision", "image_sise"),
    ("fuse", "fuse", "fold"),
]
BAD_VALUES = [   # stage, group, key, value, the message after "<stage>: "
    ("pilot", "pilot", "text_noise", 0.9, "pilot.text_noise: 0.9 must be <= 0.5"),
    ("ingest", "ingest", "step2_manifest", 5, "ingest.step2_manifest: 5 is not a path"),
    ("split", "split", "seed", "x", "split.seed: 'x' is not an integer"),
    ("split", "split", "drop_exact_duplicates", "yes please",
     "split.drop_exact_duplicates: 'yes please' is not true or false"),
    ("pack", "pack", "image_size", -5, "pack.image_size: -5 must be >= 1"),
    ("pack", "pack", "image_size", "big", "pack.image_size: 'big' is not an integer"),
    ("pack", "pack", "resize", "stretch", "pack.resize: 'stretch' is not one of squash, pad"),
    ("train_text", "train", "epochs", "three", "train.epochs: 'three' is not an integer"),
    ("train_text", "train", "learning_rate", "fast", "train.learning_rate: 'fast' is not a number"),
    ("train_vision", "vision", "image_size", 0, "vision.image_size: 0 must be >= 1"),
    ("fuse", "fuse", "folds", 1, "fuse.folds: 1 must be >= 2"),
]


def repo_params() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def params_into(folder: Path, group: str, key: str, value) -> Path:
    """The repo's params.yaml with every output path inside `folder` and `group.key = value`."""
    params = repo_params()
    for name, keys in OUTPUT_KEYS.items():
        params[name].update({k: str(folder / "out" / name / k) for k in keys})
    params[group][key] = value
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(stage: str, params: Path, *args: str, flags: bool = True) -> subprocess.CompletedProcess:
    """The stage as dvc.yaml runs it (its input flags from `params`), or by hand with `--params` alone."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    by_hand = [sys.executable, "-m", f"stages.{stage}", "--params", str(params)]
    command = stage_command(stage, params) if flags else by_hand
    return subprocess.run([*command, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_fails_with(result: subprocess.CompletedProcess, line: str, folder: Path) -> None:
    assert result.returncode == ConfigError.exit_code, result.stderr
    assert result.stderr.splitlines() == [line] and result.stdout == ""
    assert [p.name for p in folder.iterdir()] == ["params.yaml"], "the stage wrote something"


@pytest.mark.parametrize(("stage", "group", "key"), MISSPELLED, ids=[f"{g}.{k}" for _, g, k in MISSPELLED])
def test_a_misspelled_key_stops_the_stage_at_start(stage, group, key, tmp_path):
    result = run_stage(stage, params_into(tmp_path, group, key, 1))
    assert_fails_with(result, f"{stage}: params group '{group}': unknown key {key}", tmp_path)


@pytest.mark.parametrize(("stage", "group", "key", "value", "message"), BAD_VALUES,
                         ids=[f"{g}.{k}={v}" for _, g, k, v, _ in BAD_VALUES])
def test_a_bad_value_stops_the_stage_at_start_naming_the_key(stage, group, key, value, message, tmp_path):
    result = run_stage(stage, params_into(tmp_path, group, key, value))
    assert_fails_with(result, f"{stage}: {message}", tmp_path)


def test_a_bad_flag_value_is_reported_like_a_bad_param(tmp_path):
    params = params_into(tmp_path, "train", "epochs", 1)
    assert_fails_with(run_stage("train_text", params, "--epochs", "three"),
                      "train_text: train.epochs: 'three' is not an integer", tmp_path)
    assert_fails_with(run_stage("pack", params, "--image-size", "-5"), "pack: pack.image_size: -5 must be >= 1",
                      tmp_path)


def test_a_missing_params_file_named_on_the_command_line_is_an_error(tmp_path):
    result = run_stage("split", tmp_path / "nope.yaml", flags=False)
    assert result.returncode == ConfigError.exit_code
    assert result.stderr.splitlines() == [f"split: params file not found: {tmp_path / 'nope.yaml'}"]


# ---------------------------------------------------------------- --help

def stage_parser(stage: str, monkeypatch, capsys):
    """The parser `python -m stages.<stage> --help` builds, and what it printed."""
    built = []
    real = config.stage_parser

    def keep(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(config, "stage_parser", keep)
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as done:
        importlib.import_module(f"stages.{stage}").main(["--help"])
    assert done.value.code == 0
    return built[0], capsys.readouterr().out


@pytest.mark.parametrize("stage", STAGES)
def test_help_documents_every_option_and_its_default(stage, monkeypatch, capsys):
    parser, printed = stage_parser(stage, monkeypatch, capsys)
    assert printed.startswith(f"usage: python -m stages.{stage}")
    for action in parser._actions:
        if "-h" in action.option_strings:
            continue
        assert action.help and len(action.help.split("(default:")[0].strip()) > 3, f"{action.option_strings}: no help"
        assert "(default: " in action.help, f"{action.option_strings}: no default shown"
    flags = {option for action in parser._actions for option in action.option_strings}
    own_groups = {"pilot": ["pilot"], "ingest": ["ingest"], "split": ["split"], "pack": ["pack"],
                  "train_text": ["train", "text"], "train_vision": ["train", "vision"], "fuse": ["fuse"]}[stage]
    params = repo_params()
    for group in own_groups:   # every key of the stage's own groups can be overridden on the command line
        for key in params[group]:
            if key == "datasets":
                assert "--dataset" in flags
                continue
            dashed = key.replace("_", "-")
            assert {f"--{dashed}", f"--{group}-{dashed}"} & flags, f"{group}.{key}: no flag"


def test_pack_help_shows_the_params_value_as_default(monkeypatch, capsys):
    _, printed = stage_parser("pack", monkeypatch, capsys)
    flat = " ".join(printed.split())
    assert ("--image-size IMAGE_SIZE side of the square output image (at most 4096) (default: 384 from params.yaml) "
            "[pack.image_size]") in flat
    assert "--require-images, --no-require-images" in flat


# ---------------------------------------------------------------- building configs

def test_training_stages_take_command_line_overrides():
    (train, text, paths), _ = parse("train_text", "", training.stage_parts("text", TextConfig),
                                    ["--params", str(REPO_ROOT / "params.yaml"), "--epochs", "2",
                                     "--train-learning-rate", "2e-5", "--text-learning-rate", "1e-5",
                                     "--no-class-weighting", "--max-length", "64", "--shards", "elsewhere"])
    assert (train.epochs, train.learning_rate, train.class_weighting, text.learning_rate, text.max_length) == (
        2, 2e-5, False, 1e-5, 64)
    assert paths.shards == Path("elsewhere") and paths.out_model == Path("Step_4/models/text_expert")
    assert train.batch_size == repo_params()["train"]["batch_size"]   # the rest from params.yaml


def test_values_are_converted_to_the_field_types():
    params = repo_params()
    params["train"].update(learning_rate="5e-5", epochs="3")   # as `dvc exp run -S` / quoted YAML may give them
    params["text"]["learning_rate"] = None
    train, text, paths = build(training.stage_parts("text", TextConfig), params, {"text.shards": "shards"})
    assert (train.learning_rate, train.epochs, text.learning_rate) == (5e-5, 3, None)
    assert isinstance(paths.metrics, Path)
    (pack,) = build((Part("pack", PackConfig),), params,
                    {"pack.examples_limit": None, "pack.image_size": 64, **PACK_INPUTS})
    assert pack.examples_limit is None and pack.image.image_size == 64 and pack.image.max_image_pixels == 100_000_000


def test_defaults_live_in_the_dataclass_and_output_paths_must_be_set():
    params = repo_params()
    del params["pack"]["jpeg_quality"]
    (pack,) = build((Part("pack", PackConfig),), params, PACK_INPUTS)
    assert pack.image.jpeg_quality == 95
    del params["pack"]["output_dir"]
    with pytest.raises(ConfigError, match=r"^pack.output_dir is not set: set it in params.yaml or give --output-dir$"):
        build((Part("pack", PackConfig),), params, PACK_INPUTS, flags={"pack.output_dir": "--output-dir"})


def test_direct_construction_checks_the_same_limits():
    with pytest.raises(ConfigError, match=r"^pack.jpeg_quality: 101 must be <= 100$"):
        from stages.images import ImageSpec
        ImageSpec(jpeg_quality=101)
    with pytest.raises(ConfigError, match=r"^train.epochs: 0 must be >= 1$"):
        training.TrainConfig(epochs=0)


def test_an_output_named_alone_on_the_command_line_keeps_its_companion_unwritten():
    """`--report X` alone must not write the headline metrics to the params' path (the pipeline's own
    file): the companion output is then None; named too, or neither named, it stays."""
    from stages.config import unless_given
    from stages.split import PARTS as SPLIT_PARTS

    def metrics_after(argv):
        argv = ["--params", str(REPO_ROOT / "params.yaml"), "--manifest", "m", "--ocr", "o", *argv]
        (_, paths), args = parse("split", "", SPLIT_PARTS, argv)
        return unless_given(paths, args, "split", "report", "metrics").metrics

    assert metrics_after(["--report", "r.json"]) is None
    assert metrics_after(["--report", "r.json", "--metrics", "m.json"]) == Path("m.json")
    assert metrics_after([]) == Path("Step_3/metrics/split.json")


# ---------------------------------------------------------------- one home per key, help beside each field

def stage_parts() -> dict[str, list[Part]]:
    from stages import fuse, ingest, pack, pilot, split
    from stages.train_vision import VisionConfig
    return {"pilot": [Part("pilot", pilot.PilotConfig)], "ingest": [Part("ingest", ingest.IngestConfig)],
            "split": list(split.PARTS), "pack": list(pack.PARTS),
            "train_text": list(training.stage_parts("text", TextConfig)),
            "train_vision": list(training.stage_parts("vision", VisionConfig)),
            "fuse": [Part("fuse", fuse.FuseConfig), Part("fuse", fuse.FusePaths)]}


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_reads_another_stages_group(stage):
    """Keys come from the stage's own groups or a shared one (`releases`); what another stage writes
    comes as a flag (dvc.yaml's cmd), so no config reads another stage's group."""
    parts = stage_parts()[stage]
    own = {part.group for part in parts}
    assert [key.name for key in config.keys_of(parts) if key.group not in own | set(config.SHARED_GROUPS)] == []


CONVERTED = ("pilot", "ingest", "split", "pack", "train_text", "train_vision", "fuse")   # every stage


def config_fields(cls: type) -> list[dataclasses.Field]:
    """Every field of a config dataclass, nested dataclasses (flattened into the group) included."""
    hints = typing.get_type_hints(cls)
    return [leaf for f in dataclasses.fields(cls)
            for leaf in ([f, *config_fields(hints[f.name])] if dataclasses.is_dataclass(hints[f.name]) else [f])]


@pytest.mark.parametrize("stage", CONVERTED)
def test_every_config_field_has_its_help_text_beside_it(stage):
    """config.knob(default, "help", **limits): the help is the field's metadata, not a trailing comment."""
    fields = [f for part in stage_parts()[stage] for f in config_fields(part.cls)]
    assert fields and [f.name for f in fields if len(f.metadata.get("help", "")) < 4] == []


def test_an_input_another_stage_writes_is_a_flag_not_a_params_key(tmp_path):
    """`python -m stages.pack` by hand without --manifest: one line naming the flag; the same path in
    params.yaml's pack group would be its second home, so it is an unknown key."""
    params = params_into(tmp_path, "pack", "workers", 1)
    assert_fails_with(run_stage("pack", params, flags=False),
                      "pack: --manifest is not given: the Step 2 manifest (JSONL) (dvc.yaml's cmd passes it)", tmp_path)
    with_manifest = repo_params()
    with_manifest["pack"]["manifest"] = "Step_2/data_manifest.jsonl"
    with pytest.raises(ConfigError, match=r"^params group 'pack': unknown key manifest$"):
        build((Part("pack", PackConfig),), with_manifest, PACK_INPUTS)


@pytest.mark.parametrize(("stage", "flag"), [("split", "--manifest"), ("train_text", "--shards"),
                                             ("train_vision", "--shards"), ("fuse", "--text-predictions")])
def test_each_stage_run_by_hand_names_the_input_flag_it_needs(stage, flag, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(ConfigError, match=rf"^{flag} is not given: .*\(dvc.yaml's cmd passes it\)$"):
        importlib.import_module(f"stages.{stage}").main([])
