"""dvc.yaml declares exactly what each stage reads: its code (import closure) and params keys; every path
in it comes from params.yaml (one home), and DVC resolves it to the files each stage writes."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from stages.common import REPO_ROOT, dvc_yaml, load_params

WRITTEN = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())   # as written: paths are ${group.key}
DVC_YAML = dvc_yaml()   # resolved against params.yaml
STAGES = DVC_YAML["stages"]
PARAMS = load_params(None, REPO_ROOT / "params.yaml")


def module_file(module: str) -> Path | None:
    path = REPO_ROOT / (module.replace(".", "/") + ".py")
    package = REPO_ROOT / module.replace(".", "/") / "__init__.py"
    return path if path.exists() else package if package.exists() else None


def module_name(folder: Path) -> str:
    return ".".join(folder.relative_to(REPO_ROOT).parts)


def stage_imports(module: str) -> set[Path]:
    """Files of every `stages.*` module the given module imports, transitively, with the __init__.py
    of every package on the way (it runs first)."""
    seen: set[Path] = set()
    todo = [module, "stages"]
    while todo:
        name = todo.pop()
        todo += [name.rpartition(".")[0]] if "." in name else []   # a package's __init__ runs first
        path = module_file(name)
        if path is None or path in seen:
            continue
        seen.add(path)
        source = path.read_text()
        if path.name == "__init__.py" and "pkgutil.iter_modules" in source:  # a package importing all its modules
            todo += [f"{module_name(path.parent)}.{p.stem}" for p in path.parent.glob("*.py") if p.stem != "__init__"]
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
                todo.append(node.module)
                todo += [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("stages")]
    return seen


def declared_code(stage: dict) -> set[Path]:
    files: set[Path] = set()
    for dep in stage["deps"]:
        path = REPO_ROOT / dep
        if dep.startswith("stages/"):
            files |= set(path.rglob("*.py")) if path.is_dir() else {path}
    return files


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_the_import_closure(name):
    module = re.search(r"python -m (stages\.\w+)", STAGES[name]["cmd"]).group(1)
    if (REPO_ROOT / module.replace(".", "/") / "__main__.py").exists():   # a package run with -m
        module += ".__main__"
    assert declared_code(STAGES[name]) == stage_imports(module)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_keys_exist(name):
    params = load_params(None, REPO_ROOT / "params.yaml")
    for key in STAGES[name].get("params", []):
        node = params
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{name}: params key {key} not in params.yaml"
            node = node[part]


def plot_data_files() -> set[str]:
    """Every data file a top-level plot of dvc.yaml reads."""
    files = set()
    for entry in DVC_YAML["plots"]:
        (plot_id, props), = entry.items()
        files |= set(props["y"]) if isinstance(props.get("y"), dict) else {plot_id}
    return files


def test_metrics_and_plot_data_are_kept_in_git_and_other_outputs_are_not():
    uncached = []
    for name, stage in STAGES.items():
        for entry in stage.get("metrics", []):
            (path, opts), = entry.items()
            assert opts == {"cache": False}, f"{name}: metric {path} should be kept in git"
        for out in stage.get("outs", []):
            if not isinstance(out, str):
                (path, opts), = out.items()
                assert opts == {"cache": False}, f"{name}: {path}"
                uncached.append(path)
    # the uncached outs are exactly the folders holding the plots' data (`dvc plots diff HEAD` in a fresh
    # clone); the full reports beside the headline metrics are cached (one uncached output per data stage:
    # DVC 3.67 reruns a stage with two instead of restoring it from the run-cache)
    assert sorted(uncached) == ["Step_4/live/text/plots", "Step_4/live/vision/plots"]
    assert all(any(f.startswith(folder + "/") for folder in uncached) for f in plot_data_files())


def test_ingest_does_not_depend_on_the_pilot():
    """A pilot writer (stages/pilot/<name>.py) may change without rerunning ingest on real data."""
    pilot_code = REPO_ROOT / "stages" / "pilot"
    assert pilot_code / "olid.py" in declared_code(STAGES["pilot"])
    assert not [path for path in declared_code(STAGES["ingest"]) if pilot_code in path.parents]
    assert not [path for path in stage_imports("stages.ingest") if pilot_code in path.parents]


# ---------------------------------------------------------------- one home per path

# The files each stage writes, as params.yaml keys (a folder key covers the files under it).
WRITES = {"pilot": ["pilot.out"], "ingest": ["ingest.manifest", "ingest.ocr", "ingest.report", "ingest.metrics"],
          "split": ["split.splits", "split.report", "split.metrics"],
          "pack": ["pack.output_dir", "pack.stats", "pack.metrics"],
          **{f"train_{e}": [f"{e}.{k}" for k in ("out_model", "predictions", "report", "metrics", "live_dir")]
             for e in ("text", "vision")},
          "fuse": ["fuse.predictions", "fuse.report", "fuse.metrics"]}
RELEASES_FOLDER = "Datasets"   # where releases go (`dvc add Datasets/<name>`): a convention, no stage's output


def entry_path(entry: str | dict) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else entry


def param(key: str):
    node = PARAMS
    for part in key.split("."):
        node = node[part]
    return node


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


@pytest.fixture(scope="module")
def dvc_resolved() -> dict:
    """dvc.yaml as DVC itself resolves it (its `${...}` from params.yaml)."""
    from dvc.dvcfile import load_file
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        dvcfile = load_file(repo, "dvc.yaml")
        return {"stages": dvcfile.resolver.resolve()["stages"], "plots": dvcfile.plots}


@pytest.mark.parametrize("name", sorted(WRITTEN["stages"]))
def test_no_data_path_is_written_literally(name):
    """A data path in dvc.yaml is a `${group.key}` of params.yaml, never a copy that could drift."""
    stage = WRITTEN["stages"][name]
    literal = [path for kind in ("deps", "outs", "metrics") for path in map(entry_path, stage.get(kind, []))
               if not path.startswith("stages/") and "${" not in path and path != RELEASES_FOLDER]
    assert literal == []
    assert not re.search(r"\b(Step_\d|data)/", stage["cmd"]), stage["cmd"]


def test_no_plot_path_is_written_literally():
    for entry in WRITTEN["plots"]:
        (plot_id, props), = entry.items()
        files = list(props["y"]) if isinstance(props.get("y"), dict) else [plot_id]
        assert all(file.startswith("${") for file in files), files


@pytest.mark.parametrize("name", sorted(WRITES))
def test_dvc_resolves_each_stage_to_the_files_it_writes(name, dvc_resolved):
    stage = dvc_resolved["stages"][name]
    declared = [entry_path(e) for kind in ("outs", "metrics") for e in stage.get(kind, [])]
    written = [param(key) for key in WRITES[name]]
    assert all(any(inside(path, folder) for folder in written) for path in declared), (declared, written)
    assert all(any(inside(path, folder) for path in declared) for folder in written), (declared, written)


@pytest.mark.parametrize("name", sorted(WRITES))
def test_every_file_a_stage_gets_on_its_command_line_is_a_dep(name, dvc_resolved):
    stage = dvc_resolved["stages"][name]
    words = stage["cmd"].split()
    given = [value for flag, value in zip(words, words[1:]) if flag.startswith("--") and "/" in value]
    assert set(given) <= set(map(entry_path, stage["deps"])), given


def test_the_stages_read_dvc_yaml_as_dvc_does(dvc_resolved):
    """stages.common.dvc_yaml (check_owned, benchmarks, tests) resolves `${...}` exactly as DVC."""
    for name, stage in dvc_resolved["stages"].items():
        ours = STAGES[name]
        assert {kind: ours.get(kind) for kind in stage} == stage, name
    assert DVC_YAML["plots"] == dvc_resolved["plots"]


def test_the_two_expert_stages_are_one_definition_but_for_their_name():
    """train_text and train_vision stay two named stages (module, output markers, `dvc repro train_vision`),
    so they must not drift apart: the same block with `text` for `vision`."""
    text = repr(WRITTEN["stages"]["train_text"]).replace("train_text", "train_vision").replace("${text.", "${vision.")
    assert text.replace("'text'", "'vision'") == repr(WRITTEN["stages"]["train_vision"])
