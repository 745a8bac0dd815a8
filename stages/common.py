"""Small helpers every stage shares: params, atomic outputs a stage owns, deterministic JSON."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from stages.errors import OutputError  # noqa: F401  (raised here; callers import it from here)
from stages.threads import usable_cores

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUT_MARKER = ".stage-output"   # in every folder a stage writes as a whole: the stage's name
# errors that concern the written file whatever the message names (nothing is read with these)
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}




class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error (YAML says keys
    are unique; PyYAML would keep the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_params(group: str | None = None, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml (or one group of it); a duplicate key is a yaml error. Stage `main()`s call this;
    project_path reads the repo's own params.yaml for code that runs outside a stage."""
    with open(path, encoding="utf-8") as f:
        loader = _UniqueKeyLoader(f)   # a SafeLoader: plain data only
        try:
            params = loader.get_single_data() or {}
        finally:
            loader.dispose()
    return params if group is None else dict(params.get(group) or {})


def project_path(group: str, key: str) -> Path:
    """A path the project's params.yaml sets (e.g. split.label_taxonomy): its one home, for code that
    runs outside a stage's command line (tests, benchmarks, a flag left unset)."""
    return REPO_ROOT / load_params(group, REPO_ROOT / "params.yaml")[key]


INTERPOLATION = re.compile(r"\$\{\s*([\w.-]+)\s*\}")   # DVC's `${group.key}` in dvc.yaml


def dvc_yaml(root: Path | None = None, params_file: Path | None = None) -> dict[str, Any]:
    """`root`'s dvc.yaml with each `${group.key}` replaced by its value in `params_file` (default: root's
    params.yaml), as DVC resolves it (tests/test_dvc_yaml.py checks that the two agree); {} without dvc.yaml."""
    root = root or REPO_ROOT
    try:
        with open(root / "dvc.yaml", encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        return {}
    params_file = params_file or root / "params.yaml"
    params = load_params(None, params_file) if Path(params_file).is_file() else {}
    return _interpolated(data, params)


def stage_command(name: str, params_file: Path, root: Path | None = None) -> list[str]:
    """Stage `name`'s command as dvc.yaml gives it, its paths taken from `params_file`, plus `--params
    params_file`: a stage run by hand on another params file (benchmarks, tests) with the pipeline's flags."""
    return [sys.executable, *shlex.split(dvc_yaml(root, params_file)["stages"][name]["cmd"])[1:],
            "--params", str(params_file)]


def _interpolated(node: Any, params: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {_interpolated(k, params): _interpolated(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolated(item, params) for item in node]
    if isinstance(node, str):
        return INTERPOLATION.sub(lambda match: _param_text(params, match), node)
    return node


def _param_text(params: dict[str, Any], match: re.Match) -> str:
    value: Any = params
    for part in match.group(1).split("."):
        if not isinstance(value, dict) or part not in value:
            return match.group(0)   # left as written: DVC reports it
        value = value[part]
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def resolve_workers(workers: int) -> int:
    """`workers`, or when 0 the cores this process may use (respects CPU affinity/containers)."""
    return workers or usable_cores()


def json_text(obj: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | Path, obj: Any, inputs: Iterable[str | Path] = ()) -> None:
    """`json_text(obj)` written atomically (`atomic_file`)."""
    with atomic_file(path, inputs) as tmp:
        tmp.write_text(json_text(obj), encoding="utf-8")


def _remove_stale_temps(path: Path) -> None:
    """Drop temp siblings left by a killed run of the same output (DVC's repo lock rules out a live one)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a temp path beside `path`; it replaces `path` only if the block succeeds. `path` may
    not be (or hold) one of `inputs` or the repo root; a failed write is an OutputError naming it."""
    path = Path(path)
    check_not_input(path, inputs)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with output_errors(path, tmp_path):
            tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary file modes
            yield tmp_path
            os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, stage: str, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield an empty temp dir beside `path`; it replaces `path` only if the block succeeds, and only
    if `path` is the stage's own (`check_owned`). The new folder holds OUTPUT_MARKER naming `stage`."""
    path = Path(path)
    check_not_input(path, inputs)
    check_owned(path, stage)
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with output_errors(path, tmp):
            tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
            yield tmp
            (tmp / OUTPUT_MARKER).write_text(f"{stage}\n", encoding="utf-8")
            _swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, path: Path) -> None:
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def output_errors(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """An OSError of writing `path` -> OutputError naming it. Without `tmp` (making its folder and
    temp) every OSError; with it, those only writing raises (disk full, read-only) and any about
    `path` or a file in `tmp` (a read error of an input stays what it is)."""
    try:
        yield
    except OSError as err:
        about = [Path(name) for name in (err.filename, err.filename2) if name]
        if tmp is None or err.errno in OUTPUT_ERRNOS or any(p == path or p.is_relative_to(tmp) for p in about):
            raise OutputError(f"{path}: cannot write this output: {err.strerror or err}") from None
        raise


def check_not_input(path: Path, inputs: Iterable[str | Path]) -> None:
    """An output may not be, or contain, an input of its stage or the repo root (where the code and
    the user's data live): replacing it would delete them."""
    real = Path(os.path.realpath(path))
    for guarded in [REPO_ROOT, *inputs]:
        guarded_real = Path(os.path.realpath(guarded))
        if guarded_real == real or guarded_real.is_relative_to(real):
            what = "the repo root" if guarded == REPO_ROOT else f"the input {guarded}"
            relation = "is" if guarded_real == real else "contains"
            raise OutputError(f"{path}: not used as an output: it {relation} {what}; choose another path")


def check_owned(path: Path, stage: str) -> None:
    """A folder a stage may replace: absent, empty, marked as this stage's output (OUTPUT_MARKER), or
    (a folder of) the stage's outs in dvc.yaml, which DVC restores without asking. Else OutputError."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise OutputError(f"{path}: not replaced: it is a file, not a folder {stage} wrote")
    entries = list(path.iterdir())
    marker = path / OUTPUT_MARKER
    owner = marker.read_text(encoding="utf-8", errors="replace").strip() if marker.is_file() else None
    if not entries or owner == stage or _dvc_outs_of(stage, path, entries):
        return
    why = f"it holds the output of stage {owner!r}" if owner else f"it holds files {stage} did not write"
    raise OutputError(f"{path}: not replaced: {why} (no {OUTPUT_MARKER} naming {stage}); "
                      "give a new or empty folder, or move it away yourself")


def _dvc_outs_of(stage: str, path: Path, entries: list[Path]) -> bool:
    """`path`, or every entry of it (but the .gitignore DVC writes beside outs), is an out of `stage` in
    the repo's dvc.yaml."""
    try:
        declared = dvc_yaml().get("stages", {}).get(stage) or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return False
    outs = [next(iter(out)) if isinstance(out, dict) else out
            for kind in ("outs", "metrics", "plots") for out in declared.get(kind) or []]
    real = {Path(os.path.realpath(REPO_ROOT / out)) for out in outs if isinstance(out, str)}
    held = [Path(os.path.realpath(entry)) for entry in entries if entry.name not in (OUTPUT_MARKER, ".gitignore")]
    if Path(os.path.realpath(path)) in real:
        return True
    return all(entry in real for entry in held) if held else _lists_only_outs(path / ".gitignore", real)


def _lists_only_outs(gitignore: Path, outs: set[Path]) -> bool:
    """The .gitignore DVC writes beside outs (`/<name>` per out), left alone in the folder after DVC
    removed the outs before a rerun; a .gitignore of anything else is the user's."""
    try:
        lines = [line.strip() for line in gitignore.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return False
    return bool(lines) and all(line.startswith("/") and
                               Path(os.path.realpath(gitignore.parent / line[1:])) in outs for line in lines)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


