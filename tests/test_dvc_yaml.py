"""dvc.yaml declares exactly what each stage reads: its code (import closure) and params keys."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from stages.common import REPO_ROOT, load_params

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


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
