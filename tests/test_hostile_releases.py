"""Hostile and malformed release files at ingest: paths out of the release, non-UTF-8 bytes, labelled
splits without labels, empty files; and the ingest report that keeps every skip with its file:line.

Every fixture is written here; each test asserts the exact outcome (reason counted, message naming
file, line and field, exit code, nothing written).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages import ingest as ingest_stage
from stages import records
from stages.ingest import ingest
from stages.releases import ReleaseError, Skip, read_release
from tests.releases import write

REPO_ROOT = Path(__file__).resolve().parent.parent
HM_ROW = '{{"id":{n},"img":{img},"label":0,"text":"meme {n}"}}\n'


def hm_rows(*images: str) -> str:
    return "".join(HM_ROW.format(n=n, img=json.dumps(img)) for n, img in enumerate(images, start=1))


@pytest.fixture
def outside_secret(tmp_path) -> Path:
    """A file outside every release folder (stands in for /etc/passwd)."""
    return write(tmp_path / "secret" / "passwd", "root:x:0:0\n")


def skips_of(name: str, folder: Path) -> list[tuple[str, int, str]]:
    return [(Path(i.file).name, i.line, i.reason) for i in read_release(name, folder) if isinstance(i, Skip)]


# ---------------------------------------------------------------- paths out of the release folder


def test_hateful_memes_paths_out_of_the_release_are_counted_unsafe_path_skips(tmp_path, outside_secret):
    hm = tmp_path / "hm"
    (hm / "img").mkdir(parents=True)
    (hm / "img" / "evil.png").symlink_to(outside_secret)          # a symlink out of the release
    write(hm / "img" / "real.png", "png")
    (hm / "img" / "alias.png").symlink_to(hm / "img" / "real.png")  # a symlink inside it is fine
    write(hm / "train.jsonl", hm_rows("img/../../../etc/passwd", "../../x.png", "/etc/passwd", "img/evil.png",
                                      "img/00005.png", "img/alias.png", "img\\..\\..\\x.png", "C:/Windows/x.png"))
    result = ingest({"hateful_memes": hm}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path,
                    report_out=tmp_path / "report.json")
    assert result.counts == {"hateful_memes": {"train": 2}}
    assert result.skips == {"hateful_memes: unsafe_path": 6}
    rows = result.skip_rows["hateful_memes: unsafe_path"]
    assert [row["where"] for row in rows] == [f"{hm / 'train.jsonl'}:{n}" for n in (1, 2, 3, 4, 7, 8)]
    assert "'/etc/passwd'" in rows[2]["detail"] and "absolute path" in rows[2]["detail"]
    assert f"resolves to {outside_secret}, outside {hm}" in rows[3]["detail"]
    kept = [r.image_path for r in records.read_manifest(tmp_path / "m.jsonl")]
    assert kept == ["hm/img/00005.png", "hm/img/alias.png"]  # relative to the root ingest was given
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["datasets"]["hateful_memes"]["skipped"] == {"unsafe_path": 6}


def hostile_release(name: str, root: Path, secret: Path) -> int:
    """A small release of `name` with rows whose paths leave `root`; returns the hostile row count."""
    if name == "mami":
        write(root / "TRAINING" / "training.csv",
              "file_name\tmisogynous\tshaming\tstereotype\tobjectification\tviolence\tText Transcription\n"
              "../../../x.jpg\t0\t0\t0\t0\t0\tclimbs out\n/etc/passwd\t0\t0\t0\t0\t0\tabsolute\n"
              "evil.jpg\t0\t0\t0\t0\t0\tsymlink\n1.jpg\t0\t0\t0\t0\t0\tfine\n")
        (root / "TRAINING" / "evil.jpg").symlink_to(secret)
        return 3
    if name == "memotion1":
        write(root / "memotion_dataset_7k" / "labels.csv",
              ",image_name,text_ocr,text_corrected,humour,sarcasm,offensive,motivational,overall_sentiment\n"
              "0,../../../../x.jpg,a,a,funny,general,slight,motivational,neutral\n"
              "1,ok.jpg,b,b,funny,general,slight,motivational,neutral\n")
        return 1
    if name == "memotion2":
        write(root / "memotion_train.csv", "Id,Image url,ocr_text,humour,sarcastic,offensive,motivational,"
              "overall_sentiment,classification_based_on\n"
              "../../../../x,u,a,funny,not_sarcastic,slight,motivational,neutral,image\n"
              "7,u,b,funny,not_sarcastic,slight,motivational,neutral,image\n")
        return 1
    if name == "mmhs150k":
        tweet = {"tweet_text": "t", "labels": [0, 0, 0], "labels_str": ["NotHate"] * 3}
        write(root / "MMHS150K_GT.json", json.dumps({"../../../../x": tweet, "evil": tweet, "1": tweet}))
        write(root / "splits" / "train_ids.txt", "1\nevil\n")
        (root / "img_txt").mkdir()
        (root / "img_txt" / "evil.json").symlink_to(secret)  # its OCR file would be read at ingest
        return 2
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["mami", "memotion1", "memotion2", "mmhs150k"])
def test_every_adapter_taking_a_path_from_the_data_skips_unsafe_paths(name, tmp_path, outside_secret):
    root = tmp_path / name
    hostile = hostile_release(name, root, outside_secret)
    items = list(read_release(name, root))
    skips = [i for i in items if isinstance(i, Skip)]
    assert [s.reason for s in skips] == ["unsafe_path"] * hostile
    kept = [i.manifest.image_path for i in items if not isinstance(i, Skip)]
    assert len(kept) == 1 and Path(kept[0]).resolve().is_relative_to(root.resolve())


# ---------------------------------------------------------------- bytes that are not UTF-8


def test_non_utf8_jsonl_is_an_error_naming_file_line_and_column(tmp_path):
    hm = tmp_path / "hm"
    (hm).mkdir()
    bad_line = b'{"id":2,"img":"img/00002.png","label":0,"text":"caf\xe9"}\n'
    (hm / "train.jsonl").write_bytes(hm_rows("img/00001.png").encode() + bad_line)
    with pytest.raises(ReleaseError) as error:
        list(read_release("hateful_memes", hm))
    column = bad_line.index(b"\xe9") + 1
    assert str(error.value) == (f"{hm / 'train.jsonl'}:2: not valid UTF-8: byte 0xe9 at column {column}; "
                                "re-save the file as UTF-8")


def test_non_utf8_tsv_stops_the_ingest_cli_with_one_line_and_writes_nothing(tmp_path):
    olid = tmp_path / "olid"
    olid.mkdir()
    (olid / "olid-training-v1.0.tsv").write_bytes(
        b"id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\r\n1\tfine\tNOT\tNULL\tNULL\r\n"
        b"2\tna\xefve \xff\tNOT\tNULL\tNULL\r\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "stages.ingest", "--dataset", f"olid={olid}",
                             "--manifest", str(out / "m.jsonl"), "--ocr", str(out / "o.jsonl")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3 and "Traceback" not in result.stderr   # an input error
    assert result.stderr.strip() == (f"ingest: {olid / 'olid-training-v1.0.tsv'}:3: not valid UTF-8: "
                                     "byte 0xef at column 5; re-save the file as UTF-8")
    assert not out.exists() or list(out.iterdir()) == []


def test_non_utf8_json_file_names_its_line(tmp_path):
    write(tmp_path / "post_id_divisions.json", '{"train": ["1_gab"]}')
    second_line = b'"post_id": "1_gab", "post_tokens": ["\x80"]}}'
    (tmp_path / "dataset.json").write_bytes(b'{"1_gab": {\n' + second_line)
    column = second_line.index(b"\x80") + 1
    with pytest.raises(ReleaseError, match=rf"dataset\.json:2: not valid UTF-8: byte 0x80 at column {column};"):
        list(read_release("hatexplain", tmp_path))


# ---------------------------------------------------------------- labelled splits without labels


def test_rows_without_a_label_in_labelled_splits_are_counted_missing_label_skips(tmp_path):
    hm = tmp_path / "hm"
    write(hm / "train.jsonl", hm_rows("img/00001.png") + '{"id":2,"img":"img/00002.png","text":"no label"}\n')
    write(hm / "dev_seen.jsonl", '{"id":3,"img":"img/00003.png","label":null,"text":"null label"}\n'
          + HM_ROW.format(n=4, img='"img/00004.png"'))
    write(hm / "test_unseen.jsonl", '{"id":5,"img":"img/00005.png","text":"unlabelled by design"}\n')
    result = ingest({"hateful_memes": hm}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert result.counts == {"hateful_memes": {"train": 1, "dev_seen": 1, "test_unseen": 1}}
    assert result.labeled == {"hateful_memes": {"train": 1, "dev_seen": 1, "test_unseen": 0}}
    assert result.skips == {"hateful_memes: missing_label": 2}
    assert result.skip_rows["hateful_memes: missing_label"] == [
        {"where": f"{hm / 'train.jsonl'}:2", "detail": "no 'label' in train, a labelled split"},
        {"where": f"{hm / 'dev_seen.jsonl'}:1", "detail": "no 'label' in dev_seen, a labelled split"}]


def test_hatexplain_and_mmhs_without_labels_are_missing_label_skips(tmp_path):
    post = {"post_id": "1_gab", "annotators": [], "rationales": [], "post_tokens": ["hi"]}
    write(tmp_path / "hx" / "dataset.json", json.dumps({"1_gab": post}))
    assert skips_of("hatexplain", tmp_path / "hx") == [("dataset.json", 1, "missing_label")]
    write(tmp_path / "mmhs" / "MMHS150K_GT.json",
          json.dumps({"7": {"tweet_text": "t", "labels": [], "labels_str": []}}))
    assert skips_of("mmhs150k", tmp_path / "mmhs") == [("MMHS150K_GT.json", 1, "missing_label")]


# ---------------------------------------------------------------- empty release files


@pytest.mark.parametrize("name, file, text, problem", [
    ("hateful_memes", "train.jsonl", "", "empty file: no records"),
    ("hateful_memes", "train.jsonl", "\n  \n", "empty file: no records"),
    ("olid", "olid-training-v1.0.tsv", "id\ttweet\tsubtask_a\tsubtask_b\tsubtask_c\r\n", "no records after the header"),
    ("memotion2", "memotion_val.csv", "Id,ocr_text,humour,sarcastic,offensive,motivational,overall_sentiment\n",
     "no records after the header"),
    ("hatexplain", "dataset.json", "{}", "empty file: no records (an empty dict)"),
])
def test_an_empty_release_is_an_error_and_its_empty_file_is_named(name, file, text, problem, tmp_path, caplog):
    path = write(tmp_path / name / file, text)
    with pytest.raises(ReleaseError) as error, caplog.at_level(logging.WARNING):
        ingest({name: tmp_path / name}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert str(error.value) == f"{tmp_path / name}: {name}: no usable records (the release holds no rows)"
    assert f"{path}: {problem}" in caplog.messages
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]   # nothing written


def test_one_empty_file_beside_others_is_a_warning_naming_it(tmp_path, caplog):
    hm = tmp_path / "hm"
    write(hm / "train.jsonl", hm_rows("img/00001.png"))
    empty = write(hm / "dev_seen.jsonl", "")
    with caplog.at_level(logging.WARNING):
        result = ingest({"hateful_memes": hm}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    assert result.counts == {"hateful_memes": {"train": 1}}
    assert caplog.messages == [f"{empty}: empty file: no records"]


def test_a_csv_without_even_a_header_is_an_error(tmp_path):
    path = write(tmp_path / "olid" / "olid-training-v1.0.tsv", "")
    with pytest.raises(ReleaseError, match=rf"^{path}:1: empty file \(expected a header\)$"):
        list(read_release("olid", tmp_path / "olid"))


def test_a_dataset_whose_every_row_is_skipped_is_an_error_and_writes_nothing(tmp_path):
    hm = tmp_path / "hm"
    write(hm / "train.jsonl", hm_rows("../../a.png", "../../b.png"))
    with pytest.raises(ReleaseError) as error:
        ingest({"hateful_memes": hm}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path,
               report_out=tmp_path / "report.json")
    assert str(error.value) == (f"{hm}: hateful_memes: no usable records (unsafe_path 2), "
                                f"first at {hm / 'train.jsonl'}:1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hm"]


# ---------------------------------------------------------------- the ingest report and the console


def test_skips_are_kept_in_the_report_and_printed_file_line_first_in_80_columns(tmp_path):
    hm = tmp_path / ("a_rather_long_folder_name_" * 3) / "hateful_memes"
    write(hm / "train.jsonl", hm_rows("img/00001.png", "../../x.png") + "{broken\n")
    out = tmp_path / "out"
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run([sys.executable, "-m", "stages.ingest", "--dataset", f"hateful_memes={hm}",
                             "--manifest", str(out / "m.jsonl"), "--ocr", str(out / "o.jsonl")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "2 skipped rows (listed with file:line in the ingest report):" in lines
    assert "  hateful_memes: unsafe_path: 1" in lines
    assert any(line.startswith(f"    {hm / 'train.jsonl'}:2  '../../x.png' resolves to ") for line in lines)
    assert any(line.startswith(f"    {hm / 'train.jsonl'}:3  Expecting property name") for line in lines)
    report = json.loads((out / "ingest_report.json").read_text())  # beside --manifest
    assert report["examples"] == 1 and report["skipped"] == 2
    assert report["datasets"]["hateful_memes"] == {
        "examples": {"train": 1}, "labeled": {"train": 1}, "ocr_records": 1,
        "skipped": {"invalid JSON line": 1, "unsafe_path": 1}}
    assert [(r["dataset"], r["reason"], r["where"]) for r in report["skipped_rows"]] == [
        ("hateful_memes", "invalid JSON line", f"{hm / 'train.jsonl'}:3"),
        ("hateful_memes", "unsafe_path", f"{hm / 'train.jsonl'}:2")]


def test_report_paths_are_repo_relative_and_the_report_is_deterministic(tmp_path):
    result = ingest_stage.IngestResult(tmp_path / "m", tmp_path / "o")
    ingest_stage._count_skip(result, "olid", Skip(str(REPO_ROOT / "Datasets/olid/x.tsv"), 7, "empty id"))
    assert ingest_stage.report(result)["skipped_rows"] == [
        {"dataset": "olid", "reason": "empty id", "where": "Datasets/olid/x.tsv:7", "detail": ""}]
