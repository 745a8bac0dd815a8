"""One test file per dataset adapter (stages/releases/<name>.py), each read like the release's
spec: the real sample files where ../shared has them, small fixtures written in the release's own
layout otherwise. What the adapters share is tested in test_shared.py; hostile inputs in
tests/test_hostile_releases.py."""
from __future__ import annotations

from pathlib import Path

from stages.releases import Example, Skip, read_release


def examples(name: str, folder: Path) -> list[Example]:
    items = list(read_release(name, folder))
    skips = [item for item in items if isinstance(item, Skip)]
    assert not skips, skips[:3]
    return items


def split_items(name: str, folder: Path) -> tuple[list[Example], list[Skip]]:
    items = list(read_release(name, folder))
    return [i for i in items if isinstance(i, Example)], [i for i in items if isinstance(i, Skip)]


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text.replace("\n", newline).replace("<LF>", "\n"))  # <LF>: a bare LF inside a quoted field
    return path

