"""Atomic outputs and deterministic JSON: a failed block leaves the previous output untouched."""
from __future__ import annotations

import pytest

from stages.common import atomic_dir, atomic_file, load_params, write_json


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out" / "stats.json"
    write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert target.read_text().startswith('{\n  "a"')
    assert [p.name for p in target.parent.iterdir()] == ["stats.json"]


def test_atomic_dir_swaps_whole_directory(tmp_path):
    target = tmp_path / "shards"
    with atomic_dir(target, "pack") as tmp:
        (tmp / "old.tar").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, "pack") as tmp:
            (tmp / "new.tar").write_text("partial")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == [".stage-output", "old.tar"]
    with atomic_dir(target, "pack") as tmp:
        (tmp / "new.tar").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == [".stage-output", "new.tar"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]


def test_load_params_group(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  epochs: 3\npack: {}\n")
    assert load_params("train", path) == {"epochs": 3}
    assert load_params("missing", path) == {}
    assert load_params(None, path)["train"]["epochs"] == 3


def test_atomic_outputs_get_ordinary_modes(tmp_path):
    import os
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "d", "pack") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_stale_temps_of_a_killed_run_are_removed_by_the_next(tmp_path):
    (tmp_path / ".shards.abc123.tmp").mkdir()
    (tmp_path / ".shards.abc123.tmp" / "shard-00000.tar").write_text("partial")
    (tmp_path / ".stats.json.xyz.tmp").write_text("partial")
    (tmp_path / ".other.tmp").write_text("not ours")
    with atomic_dir(tmp_path / "shards", "pack") as tmp:
        (tmp / "shard-00000.tar").write_text("v1")
    write_json(tmp_path / "stats.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp", "shards", "stats.json"]
