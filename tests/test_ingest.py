"""The ingest stage: releases -> Step 2 files, user Step 2 files, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stages import records
from stages.errors import ConfigError, InputError
from stages.ingest import import_step2, ingest, main
from stages.records import ContractError
from stages.releases import DATASETS, ReleaseError

REPO_ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def small_releases(root: Path) -> dict[str, Path]:
    """Two tiny releases inside `root` (an image-bearing one and a text one)."""
    hm = root / "Datasets" / "hateful_memes"
    write(hm / "train.jsonl", '{"id":8291,"img":"img\\/08291.png","label":1,"text":"white people"}\n'
          '{"id":42953,"img":"img\\/42953.png","label":0,"text":"its their character"}\n')
    write(hm / "test_unseen.jsonl", '{"id":15740,"img":"img\\/15740.png","text":"bbq"}')
    olid = root / "Datasets" / "olid"
    write(olid / "olid-training-v1.0.tsv", "id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\n"
          "86426\t@USER She should ask\tOFF\tUNT\tNULL\n90194\t@USER Go home\tOFF\tTIN\tIND\n")
    return {"olid": olid, "hateful_memes": hm}  # deliberately not in releases.DATASETS order


def test_ingest_writes_valid_step2_files_in_fixed_order(tmp_path):
    datasets = small_releases(tmp_path)
    manifest, ocr = tmp_path / "Step_2" / "data_manifest.jsonl", tmp_path / "Step_2" / "ocr.jsonl"
    result = ingest(datasets, manifest, ocr, tmp_path)
    rows = list(records.read_manifest(manifest))
    assert [r.id for r in rows] == ["hateful_memes_train_08291", "hateful_memes_train_42953",
                                    "hateful_memes_test_unseen_15740", "olid_train_86426", "olid_train_90194"]
    assert rows[0].image_path == "Datasets/hateful_memes/img/08291.png"  # repo-relative, image need not exist
    assert rows[2].labels_raw is None and rows[3].image_path is None and rows[3].text_raw == "@USER She should ask"
    ocr_rows = list(records.read_ocr(ocr))
    assert [(o.id, o.lines[0].text, o.source) for o in ocr_rows][0] == \
        ("hateful_memes_train_08291", "white people", "dataset_transcription")
    assert len(ocr_rows) == 3 and ocr_rows[0].image_path == rows[0].image_path
    assert result.counts == {"hateful_memes": {"train": 2, "test_unseen": 1}, "olid": {"train": 2}}
    assert result.labeled["hateful_memes"] == {"train": 2, "test_unseen": 0}
    assert result.ocr_counts == {"hateful_memes": 3, "olid": 0} and result.skipped == 0
    first = manifest.read_bytes(), ocr.read_bytes()
    ingest(dict(reversed(list(datasets.items()))), manifest, ocr, tmp_path)
    assert (manifest.read_bytes(), ocr.read_bytes()) == first  # deterministic, byte-identical
    assert str(tmp_path) not in first[0].decode()


def test_duplicate_ids_and_bad_lines_are_counted_skips(tmp_path):
    hm = tmp_path / "hm"
    write(hm / "train.jsonl", '{"id":1,"img":"img/00001.png","label":1,"text":"a"}\n{"id":1,"img":"img/00001.png",'
          '"label":0,"text":"again"}\n{bad json\n{"id":2,"img":"","label":0,"text":"empty id"}\n')
    result = ingest({"hateful_memes": hm}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert result.counts == {"hateful_memes": {"train": 1}}
    assert result.skips == {"hateful_memes: duplicate id": 1, "hateful_memes: invalid JSON line": 1,
                            "hateful_memes: empty id": 1}
    (dup,) = result.skip_rows["hateful_memes: duplicate id"]
    assert dup["where"] == f"{hm / 'train.jsonl'}:2"
    assert dup["detail"].startswith(f"hateful_memes_train_00001 (first at {hm / 'train.jsonl'}:1")
    assert result.skip_rows["hateful_memes: invalid JSON line"][0]["where"] == f"{hm / 'train.jsonl'}:3"
    (row,) = records.read_manifest(tmp_path / "m.jsonl")
    assert row.labels_raw == {"label": 1}  # the first one is kept


def test_failed_ingest_leaves_previous_outputs(tmp_path):
    manifest, ocr = write(tmp_path / "m.jsonl", "old\n"), write(tmp_path / "o.jsonl", "old\n")
    write(tmp_path / "hx" / "dataset.json", "{broken")
    datasets = {**small_releases(tmp_path), "hatexplain": tmp_path / "hx"}
    with pytest.raises(ReleaseError, match=r"dataset\.json:1: invalid JSON"):
        ingest(datasets, manifest, ocr, tmp_path)
    assert manifest.read_text() == "old\n" and ocr.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m.jsonl", "o.jsonl"]  # no temp files left


def test_ingest_every_real_sample(real_samples, real_dataset, tmp_path):
    names = ["hateful_memes", "mami", "memotion1", "hatexplain", "olid"]
    datasets = {name: real_dataset(name) for name in names}
    result = ingest(datasets, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert result.counts == {
        "hateful_memes": {"train": 8500, "dev_seen": 500, "dev_unseen": 540, "test_unseen": 2000},
        "mami": {"test": 300}, "memotion1": {"train": 300},
        "hatexplain": {"train": 5, "val": 1, "test": 1}, "olid": {"train": 13240, "test": 860}}
    assert result.skips == {}
    assert result.labeled["hateful_memes"]["test_unseen"] == 0 and result.labeled["olid"]["test"] == 860
    assert result.ocr_counts == {"hateful_memes": 11540, "mami": 0, "memotion1": 300, "hatexplain": 0, "olid": 0}
    rows = list(records.read_manifest(tmp_path / "m.jsonl"))  # the one validator accepts the output
    assert len(rows) == result.examples == 26247
    assert len(list(records.read_ocr(tmp_path / "o.jsonl"))) == 11540 + 300  # every data_6512 row has a Corrected_text
    # outside the root, image paths stay absolute (and point where the release says)
    hm = next(r for r in rows if r.id == "hateful_memes_dev_seen_08291")
    assert hm.image_path == str(real_dataset("hateful_memes").resolve() / "img" / "08291.png")


def test_import_user_step2_files(tmp_path):
    image = tmp_path / "imgs" / "a.png"
    manifest_in = write(tmp_path / "in" / "m.jsonl", json.dumps(
        {"id": "mine/1.x", "dataset": "custom", "split": "train", "image_path": str(image), "text_raw": None,
         "labels_raw": {"hate": 1}}) + "\n" + json.dumps(
        {"id": "mine_2", "dataset": "custom", "split": None, "image_path": None, "text_raw": "t", "labels_raw": None,
         "lang": "de"}) + "\n")
    ocr_in = write(tmp_path / "in" / "o.jsonl", json.dumps(
        {"id": "mine/1.x", "dataset": "custom", "split": "train", "image_path": str(image),
         "ocr": {"lines": [{"text": "hi", "conf": 0.9, "bbox": [0, 0, 1, 1]}], "source": "ocr"}}) + "\n")
    result = import_step2(manifest_in, ocr_in, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    rows = list(records.read_manifest(tmp_path / "m.jsonl"))
    assert [r.image_path for r in rows] == ["imgs/a.png", None] and rows[1].lang == "de"
    (ocr,) = records.read_ocr(tmp_path / "o.jsonl")
    assert ocr.image_path == "imgs/a.png" and ocr.lines[0].conf == 0.9
    assert result.counts == {"custom": {"train": 1, "(none)": 1}} and result.ocr_counts == {"custom": 1}

    write(ocr_in, ocr_in.read_text() + json.dumps({"id": "ghost", "dataset": "custom", "split": None,
                                                   "image_path": None, "ocr": {"lines": []}}) + "\n")
    with pytest.raises(ContractError, match=r"o\.jsonl:2: field 'id': 'ghost': not in the manifest"):
        import_step2(manifest_in, ocr_in, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    write(manifest_in, manifest_in.read_text() + '{"id": "mine_2", "dataset": "custom"}\n')
    with pytest.raises(ContractError, match=r"m\.jsonl:3: field 'split': missing"):
        import_step2(manifest_in, ocr_in, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert [r.image_path for r in records.read_manifest(tmp_path / "m.jsonl")] == ["imgs/a.png", None]  # untouched


def params_file(tmp_path: Path, ingest_params: dict) -> Path:
    import yaml
    return write(tmp_path / "params.yaml", yaml.safe_dump({"ingest": ingest_params}))


def test_cli_dataset_options_and_params(tmp_path, capsys):
    datasets = small_releases(tmp_path)
    out_m, out_o = tmp_path / "out" / "m.jsonl", tmp_path / "out" / "o.jsonl"
    params = params_file(tmp_path, {"datasets": {"mami": str(tmp_path / "missing")}, "manifest": str(out_m),
                                    "ocr": str(out_o), "step2_manifest": None, "step2_ocr": None})
    result = main(["--params", str(params), "--dataset", f"olid={datasets['olid']}"])
    assert result.counts == {"olid": {"train": 2}} and len(out_m.read_text().splitlines()) == 2
    assert "olid" in capsys.readouterr().out
    # no --dataset: the datasets come from params (here a folder that does not exist)
    with pytest.raises(ConfigError, match="^dataset folder for 'mami' does not exist"):
        main(["--params", str(params)])
    with pytest.raises(ConfigError, match="^unknown dataset name.*'memes'.*valid names: hateful_memes, mami"):
        main(["--params", str(params), "--dataset", f"memes={datasets['olid']}"])
    with pytest.raises(ConfigError, match="^--dataset expects NAME=DIR"):
        main(["--params", str(params), "--dataset", "olid"])
    with pytest.raises(InputError, match="unknown layout.*expected any of"):
        main(["--params", str(params), "--dataset", f"olid={datasets['hateful_memes']}"])


def test_cli_step2_files(tmp_path):
    ingest(small_releases(tmp_path), tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    params = params_file(tmp_path, {"datasets": {}, "manifest": str(tmp_path / "out" / "m.jsonl"),
                                    "ocr": str(tmp_path / "out" / "o.jsonl"),
                                    "step2_manifest": str(tmp_path / "m.jsonl"),
                                    "step2_ocr": str(tmp_path / "o.jsonl")})
    result = main(["--params", str(params)])
    assert result.examples == 5 and (tmp_path / "out" / "o.jsonl").read_bytes() == (tmp_path / "o.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="^give both Step 2 files"):
        one_file = params_file(tmp_path, {"manifest": "m", "ocr": "o", "step2_manifest": str(tmp_path / "m.jsonl")})
        main(["--params", str(one_file)])


def test_cli_help_runs_as_module():
    done = subprocess.run([sys.executable, "-m", "stages.ingest", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--dataset NAME=DIR" in done.stdout and "--step2-manifest" in done.stdout


def test_ingest_reads_the_pilot_releases(tmp_path):
    from stages.pilot import PilotConfig, write_pilot
    pilot = write_pilot(PilotConfig(out=tmp_path / "data" / "pilot", examples_per_dataset=30))
    datasets = {name: pilot.out / name for name in DATASETS}
    result = ingest(datasets, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert result.skips == {}
    # the pilot calls the split of posts in no division "none"; the summary shows "(none)"
    assert {name: {split.replace("(none)", "none"): n for split, n in splits.items()}
            for name, splits in result.counts.items()} == pilot.counts
    rows = list(records.read_manifest(tmp_path / "m.jsonl"))
    with_image = [r for r in rows if r.image_path]
    assert with_image and all((tmp_path / r.image_path).is_file() for r in with_image)  # repo-relative, real files
    assert {r.dataset for r in with_image} == {"hateful_memes", "mami", "mmhs150k", "memotion1", "memotion2"}
