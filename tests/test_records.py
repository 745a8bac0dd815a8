"""The Step 2 contract: validation messages, key safety and round trips."""
from __future__ import annotations

import json

import pytest

from stages.records import (
    ContractError,
    ManifestRecord,
    OcrLine,
    OcrRecord,
    jsonl_line,
    make_id,
    read_manifest,
    read_ocr,
    relative_image_path,
    resolve_image_path,
    safe_key,
)

GOOD = {"id": "olid_train_86426", "dataset": "olid", "split": "train", "image_path": None,
        "text_raw": "@USER She should ask", "labels_raw": {"subtask_a": "OFF"}}


def write_jsonl(path, records) -> int:
    """Records one `jsonl_line` each, as ingest writes them; returns how many."""
    lines = [jsonl_line(record) for record in records]
    path.write_text("".join(lines), encoding="utf-8", newline="\n")
    return len(lines)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_manifest_round_trip(tmp_path):
    records = [ManifestRecord(**GOOD), ManifestRecord("hateful_memes_test_unseen_01234", "hateful_memes",
                                                      "test_unseen", "data/img/01234.png", None, None, "en")]
    path = tmp_path / "m.jsonl"
    assert write_jsonl(path, records) == 2
    assert list(read_manifest(path)) == records
    assert "lang" not in json.loads(path.read_text().splitlines()[0])


def test_ocr_round_trip(tmp_path):
    record = OcrRecord("x_train_1", "mami", "train", "a/1.jpg", (OcrLine("HELLO", 0.9, [0, 0, 5, 5]),),
                       "dataset_transcription")
    path = tmp_path / "o.jsonl"
    write_jsonl(path, [record])
    assert list(read_ocr(path)) == [record]


@pytest.mark.parametrize("line, field, problem", [
    ('{"id": "a", "dataset": "olid"', "<line>", "invalid JSON"),
    (json.dumps({**GOOD, "id": ""}), "id", "empty id"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "text_raw"}), "text_raw", "missing"),
    (json.dumps({**GOOD, "labels_raw": "OFF"}), "labels_raw", "expected dict"),
    (json.dumps({**GOOD, "dataset": None}), "dataset", "must not be null"),
    (json.dumps([1, 2]), "<line>", "JSON object"),
])
def test_manifest_errors_name_file_line_and_field(tmp_path, line, field, problem):
    path = write_lines(tmp_path / "m.jsonl", [json.dumps(GOOD | {"id": "first"}), line])
    with pytest.raises(ContractError) as err:
        list(read_manifest(path))
    assert (err.value.line, err.value.field) == (2, field)
    assert problem in str(err.value) and str(path) in str(err.value)


def test_duplicate_id_is_an_error(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [json.dumps(GOOD), "", json.dumps(GOOD)])
    with pytest.raises(ContractError, match=r"m\.jsonl:3: field 'id': duplicate id"):
        list(read_manifest(path))


def test_ocr_errors(tmp_path):
    bad = {"id": "a", "dataset": "mami", "split": None, "image_path": "x.jpg",
           "ocr": {"lines": [{"text": "ok", "conf": "high"}]}}
    path = write_lines(tmp_path / "o.jsonl", [json.dumps(bad)])
    with pytest.raises(ContractError, match=r"ocr\.lines\[0\]\.conf"):
        list(read_ocr(path))


@pytest.mark.parametrize("raw", ["../../etc/x", "a.b/c", "naïve 😀", "100%", "a%2Eb", "x~y", "plain_id-1", "abc\n"])
def test_safe_key_is_webdataset_safe_and_injective(raw):
    key = safe_key(raw)
    assert "." not in key and "/" not in key and key.isascii()
    assert all(c.isalnum() or c in "_-%" for c in key)
    import urllib.parse
    assert urllib.parse.unquote(key) == raw


def test_safe_key_distinguishes_lookalikes():
    raws = ["a.b", "a/b", "a%2Eb", "a_b", "a-b"]
    assert len({safe_key(r) for r in raws}) == len(raws)


def test_make_id():
    assert make_id("hateful_memes", "dev_seen", "08291") == "hateful_memes_dev_seen_08291"
    assert make_id("memotion1", "train", "image_1.jpg") == "memotion1_train_image_1%2Ejpg"
    assert make_id("hatexplain", None, "1_gab") == "hatexplain_all_1_gab"


def test_image_paths_relative_to_root(tmp_path):
    inside = tmp_path / "data" / "img" / "1.png"
    assert relative_image_path(inside, tmp_path) == "data/img/1.png"
    assert relative_image_path("/elsewhere/1.png", tmp_path) == "/elsewhere/1.png"
    assert resolve_image_path("data/img/1.png", tmp_path) == inside
    assert resolve_image_path("/elsewhere/1.png", tmp_path).as_posix() == "/elsewhere/1.png"


def test_invalid_utf8_is_a_contract_error(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(ContractError, match=r"m\.jsonl:2: field '<line>': invalid UTF-8"):
        list(read_manifest(path))
