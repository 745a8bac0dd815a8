"""Small helpers every stage shares: params, atomic outputs, deterministic JSON, Ctrl-C."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from stages.threads import usable_cores

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_params(group: str | None = None, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml (or one group of it). Only stage `main()`s call this."""
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    return params if group is None else dict(params.get(group) or {})


def resolve_workers(workers: int) -> int:
    """`workers`, or when 0 the cores this process may use (respects CPU affinity/containers)."""
    return workers or usable_cores()


def json_text(obj: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """`json_text(obj)` written atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json_text(obj), encoding="utf-8")


def _remove_stale_temps(path: Path) -> None:
    """Drop temp siblings left by a killed run of the same output (DVC's repo lock rules out a live one)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; outputs get ordinary file modes
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp dir beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


INTERRUPTED_EXIT = 130   # 128 + SIGINT, as shells report a Ctrl-C


@contextlib.contextmanager
def exit_on_interrupt(stage: str, note: Callable[[], str] = str) -> Iterator[None]:
    """Ctrl-C: one line instead of a traceback (atomic outputs have already been rolled back), exit 130.
    `note()` may add to the line (what was kept, e.g. a checkpoint to resume from)."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; no outputs written{note()}", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED_EXIT) from None
