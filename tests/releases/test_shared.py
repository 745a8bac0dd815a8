"""What every release adapter shares: the registry, errors naming file and line, files found by name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.releases import SPECS, ReleaseError, read_release
from tests.conftest import REPO_ROOT
from tests.releases import examples, write


def test_registry_covers_every_dataset():
    from stages.releases import DATASETS
    # every module of the package is registered (found, not listed); the original seven keep their order
    modules = sorted(p.stem for p in (REPO_ROOT / "stages" / "releases").glob("*.py") if p.stem != "__init__")
    assert sorted(SPECS) == sorted(DATASETS) == modules
    assert DATASETS == ("hateful_memes", "mami", "mmhs150k", "memotion1", "memotion2", "hatexplain", "olid",
                        "hatecheck")
    with pytest.raises(ValueError, match="valid names: hateful_memes"):
        read_release("nope", Path("."))


def test_errors_name_file_and_line(tmp_path):
    write(tmp_path / "hx" / "dataset.json", '{"1_gab": {"post_id": "1_gab",\n "annotators": [}')
    with pytest.raises(ReleaseError, match=r"dataset\.json:2: invalid JSON"):
        list(read_release("hatexplain", tmp_path / "hx"))
    write(tmp_path / "ol" / "olid-training-v1.0.tsv", "id\ttweet\tsubtask_a\n1\tx\tNOT\n")
    with pytest.raises(ReleaseError, match=r"olid-training-v1\.0\.tsv:1: header lacks column\(s\) \['subtask_b'"):
        list(read_release("olid", tmp_path / "ol"))
    write(tmp_path / "ol2" / "testset-levela.tsv", "id\ttweet\n1\tx\n")
    write(tmp_path / "ol2" / "labels-levela.csv", "id,label\n1,OFF\n1,NOT\n")
    with pytest.raises(ReleaseError, match=r"labels-levela\.csv:3: duplicate id '1'"):
        list(read_release("olid", tmp_path / "ol2"))


def test_files_are_found_by_name_and_ambiguity_is_an_error(tmp_path):
    posts = {"1_gab": {"post_id": "1_gab", "annotators": [{"label": "normal", "annotator_id": 1, "target": ["None"]}],
                       "rationales": [], "post_tokens": ["hi", "there"]}}
    write(tmp_path / "deep" / "er" / "dataset.json", json.dumps(posts))
    write(tmp_path / "a" / "post_id_divisions.json", json.dumps({"train": ["1_gab"], "val": [], "test": []}))
    write(tmp_path / "b" / "post_id_divisions.json", json.dumps({"train": ["1_gab"], "val": [], "test": []}))
    (item,) = examples("hatexplain", tmp_path)  # identical copies are fine
    assert item.manifest.id == "hatexplain_train_1_gab" and item.manifest.text_raw == "hi there"
    write(tmp_path / "b" / "post_id_divisions.json", json.dumps({"train": [], "val": ["1_gab"], "test": []}))
    with pytest.raises(ReleaseError, match="two different files named 'post_id_divisions.json'"):
        list(read_release("hatexplain", tmp_path))


def test_unknown_layout_names_folder_and_expected_files(tmp_path):
    write(tmp_path / "readme.txt", "nothing here")
    for name in SPECS:
        with pytest.raises(ReleaseError, match="unknown layout.*expected any of"):
            list(read_release(name, tmp_path))

