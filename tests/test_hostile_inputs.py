"""Hostile inputs (issue 24, items 2, 5, 6): a release behind a symlinked folder (invisible to DVC),
special files where a release file or an image should be (a FIFO hung ingest and split, /dev/zero
never ends), absolute image paths split used to hash (/etc/passwd), and a header naming a column
twice. Each test reproduced the hang, the silent choice or the traceback on the unchanged code;
the hangs run in a subprocess with a timeout so that a regression fails instead of hanging.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages.ingest import ingest
from stages.releases import ReleaseError, read_release
from tests.releases import write

REPO_ROOT = Path(__file__).resolve().parent.parent
OLID_HEADER = "id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n"
HANG = 60   # seconds: far above the few a stage needs here


def olid_release(folder: Path) -> Path:
    write(folder / "olid-training-v1.0.tsv", OLID_HEADER + "1\tfirst tweet\tNOT\tNULL\tNULL\n")
    return folder


def stage(*argv: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True, text=True, timeout=HANG)


# ---------------------------------------------------------------- item 2: releases behind symlinks


def test_a_release_folder_behind_a_symlink_under_the_repo_is_refused_naming_the_link(tmp_path):
    repo = tmp_path / "repo"
    real = olid_release(tmp_path / "elsewhere" / "olid")
    (repo / "Datasets").mkdir(parents=True)
    (repo / "Datasets" / "olid").symlink_to(real)
    with pytest.raises(ReleaseError) as err:
        ingest({"olid": repo / "Datasets" / "olid"}, repo / "m.jsonl", repo / "o.jsonl", repo)
    assert str(err.value) == (
        f"{repo / 'Datasets' / 'olid'}: {repo / 'Datasets' / 'olid'} is a symlink to {real}: DVC would not see "
        "changes behind it; move or copy the release folder itself here (symlinked files inside it are fine: "
        "DVC hashes their targets)")
    assert not (repo / "m.jsonl").exists()
    (repo / "linked").symlink_to(tmp_path / "elsewhere")   # a symlinked parent folder hides it the same way
    with pytest.raises(ReleaseError, match=f"^{repo / 'linked' / 'olid'}: {repo / 'linked'} is a symlink"):
        ingest({"olid": repo / "linked" / "olid"}, repo / "m.jsonl", repo / "o.jsonl", repo)


def test_dvc_hashes_a_symlinked_file_by_its_target_and_ingest_reads_it(tmp_path):
    """What the message promises: a symlinked FILE inside a real release folder is followed by DVC."""
    real = olid_release(tmp_path / "elsewhere")
    release = tmp_path / "Datasets" / "olid"
    release.mkdir(parents=True)
    (release / "olid-training-v1.0.tsv").symlink_to(real / "olid-training-v1.0.tsv")
    result = ingest({"olid": release}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert result.counts == {"olid": {"train": 1}}
    (tmp_path / "dvc.yaml").write_text("stages:\n  s:\n    cmd: cat Datasets/olid/* > out.txt\n"
                                       "    deps: [Datasets]\n    outs: [out.txt]\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "-q"]):
        subprocess.run(command, cwd=tmp_path, check=True)
    status = ["dvc", "status", "-q"]
    assert subprocess.run(status, cwd=tmp_path).returncode == 0
    with open(real / "olid-training-v1.0.tsv", "a") as f:
        f.write("2\tappended\tNOT\tNULL\tNULL\n")
    assert subprocess.run(status, cwd=tmp_path).returncode == 1   # changed: ingest would rerun


# ---------------------------------------------------------------- item 5: special files


def test_a_fifo_as_a_release_file_is_one_line_not_a_hang(tmp_path):
    release = tmp_path / "olid"
    release.mkdir()
    os.mkfifo(release / "olid-training-v1.0.tsv")
    result = stage("stages.ingest", "--dataset", f"olid={release}", "--manifest", str(tmp_path / "m.jsonl"),
                   "--ocr", str(tmp_path / "o.jsonl"))
    assert result.returncode == 3   # an input error
    assert result.stderr.strip().splitlines() == [
        f"ingest: {release / 'olid-training-v1.0.tsv'}: not a regular file (a FIFO, device or socket); "
        "put the release file itself here"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["olid"]


def test_a_fifo_as_a_per_example_file_is_a_counted_skip(tmp_path):
    root = tmp_path / "mmhs"
    write(root / "MMHS150K_GT.json", json.dumps({"1": {"tweet_text": "hi", "labels": [0, 0, 0],
                                                       "labels_str": ["NotHate"] * 3}}))
    write(root / "splits" / "train_ids.txt", "1\n")
    (root / "img_txt").mkdir()
    os.mkfifo(root / "img_txt" / "1.json")
    code = ("import sys; from stages.releases import read_release, Skip; "
            "print([i.reason for i in read_release('mmhs150k', sys.argv[1]) if isinstance(i, Skip)])")
    result = subprocess.run([sys.executable, "-c", code, str(root)], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=HANG)
    assert result.stdout.strip() == "['unreadable img_txt (example kept without OCR)']", result.stderr


def test_split_hashes_only_regular_files_under_image_dirs(tmp_path):
    """A FIFO, /dev/zero (also behind a symlink) and /etc/passwd as manifest image paths: split hung on
    the first ones and hashed the last; now special files are `not_a_file` even inside releases.image_dirs
    (here also /dev), and /etc/passwd, outside them, `unsafe_path` (never opened)."""
    images = tmp_path / "images"
    images.mkdir()
    os.mkfifo(images / "fifo.png")
    (images / "zero.png").symlink_to("/dev/zero")
    paths = {"fifo": str(images / "fifo.png"), "zero": str(images / "zero.png"), "devzero": "/dev/zero",
             "passwd": "/etc/passwd"}
    records = [{"id": f"hateful_memes_train_{name}", "dataset": "hateful_memes", "split": "train", "image_path": path,
                "text_raw": f"meme {name}", "labels_raw": {"label": 0}} for name, path in paths.items()]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "o.jsonl").write_text("")
    result = stage("stages.split", "--manifest", str(tmp_path / "m.jsonl"), "--ocr", str(tmp_path / "o.jsonl"),
                   "--splits", str(tmp_path / "s.json"), "--report", str(tmp_path / "r.json"),
                   "--image-dirs", f"[{images}, /dev]")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())["images"]
    assert {key: report[key] for key in ("hashed", "missing", "undecodable", "not_a_file", "unsafe_path")} == \
        {"hashed": 0, "missing": 0, "undecodable": 0, "not_a_file": 3, "unsafe_path": 1}


# ---------------------------------------------------------------- item 6: a column named twice


@pytest.mark.parametrize("rows", ["1\tfirst\tsecond\tNOT\tNULL\tNULL\n", "1\tshort\tNOT\tNULL\tNULL\n"])
def test_a_column_named_twice_is_an_error_naming_file_and_column(tmp_path, rows):
    """The last `tweet` column was taken silently; a row one field short was an IndexError."""
    path = write(tmp_path / "olid" / "olid-training-v1.0.tsv", "id\ttweet\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n"
                 + rows)
    with pytest.raises(ReleaseError) as err:
        list(read_release("olid", tmp_path / "olid"))
    assert str(err.value) == f"{path}:1: column 'tweet' is in the header twice (columns 2 and 3); keep one"


def test_memotion_columns_equal_after_normalising_are_named_twice_too(tmp_path):
    path = write(tmp_path / "m2" / "memotion_train.csv",
                 "Id,ocr_text,OCR_Text,humour,sarcastic,offensive,motivational,overall_sentiment\n")
    with pytest.raises(ReleaseError, match=r"column 'ocr_text' is in the header twice \(columns 2 and 3\)"):
        list(read_release("memotion2", path.parent))
