"""Heavy libraries are imported where they are used: importing a module of `stages` loads
transformers and timm only when the module trains, and torch only when it needs torch at import
(stages.training: ShardStream is a torch IterableDataset).

Each module is imported alone in its own process, so that nothing another module imported hides
what it pulls in: one fresh interpreter loads the light libraries many modules share (numpy, yaml,
rich, Pillow, scikit-learn; never one of the heavy ones) and forks a child per module, which
imports the module and reports the heavy libraries then in sys.modules: the same answer as a
fresh `python -c "import stages.<module>"` per module, in a fifth of the time."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TRAINS = ("stages.train_text", "stages.train_vision", "stages.training.trainer")   # the Trainer and its stages
TORCH_AT_IMPORT = "stages.training"
HEAVY = ("transformers", "timm", "torch")

PROBE = """
import importlib, json, os, sys
import numpy, yaml, rich.console, rich.progress, PIL.Image, sklearn.metrics   # shared, light: loaded once
assert not [name for name in HEAVY if name in sys.modules], "a shared library loaded a heavy one"
found = {}
for module in MODULES:
    read_end, write_end = os.pipe()
    if os.fork() == 0:
        importlib.import_module(module)
        os.write(write_end, json.dumps([name for name in HEAVY if name in sys.modules]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        found[module] = json.loads(pipe.read() or "null")   # null: the import failed
    os.wait()
print(json.dumps(found))
"""


def stages_modules() -> list[str]:
    """Every module of the package; stages.training's own modules count as the package, whose
    __init__ (importing all of them but the trainer) runs before any of them."""
    names = []
    for path in sorted((REPO / "stages").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] in ("__init__", "__main__") else parts)
        if name.startswith(TORCH_AT_IMPORT + ".") and name not in TRAINS:
            name = TORCH_AT_IMPORT
        if name not in names:
            names.append(name)
    return names


@pytest.fixture(scope="module")
def heavy_loaded() -> dict[str, list[str] | None]:
    """module -> the heavy libraries in sys.modules after importing it alone."""
    modules = [m for m in stages_modules() if m not in TRAINS] + ["stages.train_text"]   # + the control
    code = f"HEAVY, MODULES = {HEAVY!r}, {modules!r}\n{PROBE}"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.parametrize("module", [m for m in stages_modules() if m not in TRAINS])
def test_a_module_that_does_not_train_imports_no_transformers_or_timm(module, heavy_loaded):
    assert set(heavy_loaded[module]) <= ({"torch"} if module == TORCH_AT_IMPORT else set())


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_training_stage_does_load_transformers(heavy_loaded):
    """The check above can fail: the expert stages import the Trainer."""
    assert {"transformers", "torch"} <= set(heavy_loaded["stages.train_text"])


def module_imports(path: Path) -> set[str]:
    """The stages modules a file imports when it is imported: its top-level import statements, not
    those under `if TYPE_CHECKING:` / `if __name__ == "__main__":` or inside functions."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages"):
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("stages")}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (REPO / "stages").rglob("*.py")}
    return {name: {m for m in module_imports(path) if m in files and m != name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle a depth-first walk meets, as the modules along it."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                found.append(path[path.index(imported):] + [module, imported])
            elif imported not in state:
                visit(imported, path + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def test_no_import_cycle_among_the_stages_modules():
    graph = import_graph()
    assert len(graph) > 40 and graph["stages.pack"] >= {"stages.pack_stats", "stages.images"}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
