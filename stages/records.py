"""The Step 2 contract: typed manifest and OCR records, one reader/validator for both files.

data_manifest.jsonl: {"id", "dataset", "split", "image_path", "text_raw", "labels_raw"}
ocr.jsonl:           {"id", "dataset", "split", "image_path", "ocr": {"lines": [{text, conf, bbox}], "source"}}

Image paths are stored relative to the repo root (so outputs do not depend on the machine);
absolute paths are accepted on input and resolved with `resolve_image_path`.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from stages.errors import InputError

SPLITS = ("train", "val", "test")  # the splits Step 3 assigns for training and model selection
DIAGNOSTIC_SPLIT = "diagnostic"  # evaluation-only datasets (params split.diagnostic_datasets): never trained on
PACKED_SPLITS = SPLITS + (DIAGNOSTIC_SPLIT,)  # every splits.json value and shard folder

_KEY_SAFE = re.compile(r"^[A-Za-z0-9_\-%]+$")


class ContractError(InputError):
    """A Step 2 file breaks the contract; the message names file, line and field."""

    def __init__(self, path: str | Path, line: int, field_name: str, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field_name, problem
        super().__init__(f"{path}:{line}: field '{field_name}': {problem}")


@dataclass(frozen=True)
class ManifestRecord:
    id: str
    dataset: str
    split: str | None
    image_path: str | None
    text_raw: str | None
    labels_raw: dict[str, Any] | None  # None = unlabeled (e.g. Hateful Memes test_unseen)
    lang: str | None = None  # optional extension; pack falls back to its `lang` param

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if out["lang"] is None:
            del out["lang"]
        return out


@dataclass(frozen=True)
class OcrLine:
    text: str
    conf: float | None = None
    bbox: list[float] | None = None


@dataclass(frozen=True)
class OcrRecord:
    id: str
    dataset: str
    split: str | None
    image_path: str | None
    lines: tuple[OcrLine, ...] = ()
    source: str = "ocr"  # "ocr" (an OCR engine) or "dataset_transcription" (shipped with the release)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "dataset": self.dataset, "split": self.split, "image_path": self.image_path,
            "ocr": {"lines": [asdict(line) for line in self.lines], "source": self.source},
        }


def safe_key(raw_id: str) -> str:
    """An injective, reversible WebDataset-safe key: only [A-Za-z0-9_-] and %XX escapes.

    WebDataset cuts the key at the first dot and treats '/' as a directory, so both (and every
    other byte outside the safe set, including '%' itself) are percent-encoded as UTF-8.
    """
    if _KEY_SAFE.fullmatch(raw_id) and "%" not in raw_id:
        return raw_id
    return urllib.parse.quote(raw_id, safe="-_").replace(".", "%2E").replace("~", "%7E")


def make_id(dataset: str, split: str | None, example_id: str | int) -> str:
    """`<dataset>_<split>_<example_id>` made key-safe (see `safe_key`)."""
    return safe_key(f"{dataset}_{split or 'all'}_{example_id}")


def relative_image_path(path: str | Path, root: Path) -> str:
    """Store image paths relative to the repo root when they lie under it, else absolute."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def resolve_image_path(image_path: str, root: Path) -> Path:
    p = Path(image_path)
    return p if p.is_absolute() else root / p


def image_folders(image_dirs: Iterable[str | Path] | None, root: Path) -> list[Path]:
    """`releases.image_dirs` resolved against the image root (None: the root itself): the folders split
    and pack read images from."""
    return [resolve_image_path(str(d), root) for d in image_dirs or (root,)]


# ---------------------------------------------------------------- official evaluation splits

EVAL_SPLITS = ("val", "test")  # the splits scores are reported on


def official_split(official: dict[str, dict[str, str]], dataset: str, orig_split: str | None) -> str | None:
    """The split a release's own split file goes to as a whole (params `releases.official`), or None
    when it is carved, created, or the record has no original split."""
    target = official.get(dataset, {}).get(orig_split) if orig_split is not None else None
    return target if target in SPLITS else None


def evaluation_splits(files: dict[tuple[str, str, str], dict[str, int]], others: dict[tuple[str, str], int],
                      present: str) -> dict[str, dict[str, Any]]:
    """Per dataset and evaluation split: is it the release's own (`official`: built only from
    official files, nothing carved or created in it) and is it `complete` (every example of those
    files is `present`: "kept" by split, "packed" by pack)?

    files: (dataset, split, original split file) -> counts: "official_examples", `present` and
    any others (summed over the files too); others: (dataset, split) -> carved or created
    examples present in that split.
    """
    cells = {(d, s) for d, s, _ in files} | set(others)
    out: dict[str, dict[str, Any]] = {}
    for dataset, split in sorted(c for c in cells if c[1] in EVAL_SPLITS):
        own = {f: counts for (d, s, f), counts in sorted(files.items()) if (d, s) == (dataset, split)}
        carved = others.get((dataset, split), 0)
        totals = {"official_examples": 0, present: 0,
                  **{key: sum(c[key] for c in own.values()) for counts in own.values() for key in counts}}
        out.setdefault(dataset, {})[split] = {
            "official": bool(own) and carved == 0,
            "complete": all(c[present] == c["official_examples"] for c in own.values()) if own else None,
            **totals, "carved_or_created": carved, "files": own}
    return out


def outside_roots(path: str | Path, roots: Iterable[str | Path]) -> str | None:
    """None when `path`, with every symlink and `..` resolved (as open() would), lies under the
    resolved form of one of `roots`; else why not. The one containment rule of ingest and pack."""
    real = Path(os.path.realpath(path))
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    if any(real.is_relative_to(root) for root in real_roots):
        return None
    shown = " or ".join(str(root) for root in real_roots)
    return f"resolves to {real}, outside {shown}"


def read_regular(path: str | Path) -> bytes:
    """The bytes of `path` when it is a regular file (symlinks followed). Opened without blocking and
    checked before reading, so a FIFO, device or socket is an OSError (ENXIO/EINVAL), never a hang
    or an endless read (/dev/zero)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or socket)", str(path))
        return f.read()


# ---------------------------------------------------------------- validation


def _require(obj: dict, key: str, types: tuple, path, line: int, nullable: bool = False) -> Any:
    if key not in obj:
        raise ContractError(path, line, key, "missing")
    value = obj[key]
    if value is None:
        if nullable:
            return None
        raise ContractError(path, line, key, "must not be null")
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        names = "/".join(t.__name__ for t in types)
        raise ContractError(path, line, key, f"expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


def _check_id(value: str, path, line: int) -> str:
    if not value.strip():
        raise ContractError(path, line, "id", "empty id")
    return value


def manifest_record_from_json(obj: Any, path: str | Path = "<manifest>", line: int = 0) -> ManifestRecord:
    if not isinstance(obj, dict):
        raise ContractError(path, line, "<line>", f"expected a JSON object, got {type(obj).__name__}")
    lang = obj.get("lang")
    if lang is not None and not isinstance(lang, str):
        raise ContractError(path, line, "lang", "expected str")
    return ManifestRecord(
        id=_check_id(_require(obj, "id", (str,), path, line), path, line),
        dataset=_require(obj, "dataset", (str,), path, line),
        split=_require(obj, "split", (str,), path, line, nullable=True),
        image_path=_require(obj, "image_path", (str,), path, line, nullable=True) or None,
        text_raw=_require(obj, "text_raw", (str,), path, line, nullable=True),
        labels_raw=_require(obj, "labels_raw", (dict,), path, line, nullable=True),
        lang=lang,
    )


def ocr_record_from_json(obj: Any, path: str | Path = "<ocr>", line: int = 0) -> OcrRecord:
    if not isinstance(obj, dict):
        raise ContractError(path, line, "<line>", f"expected a JSON object, got {type(obj).__name__}")
    ocr = _require(obj, "ocr", (dict,), path, line)
    raw_lines = ocr.get("lines")
    if not isinstance(raw_lines, list):
        raise ContractError(path, line, "ocr.lines", "missing or not a list")
    lines = []
    for i, item in enumerate(raw_lines):
        where = f"ocr.lines[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ContractError(path, line, where, "expected an object with a string 'text'")
        conf = item.get("conf")
        if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float))):
            raise ContractError(path, line, f"{where}.conf", f"expected a number, got {conf!r:.40}")
        bbox = item.get("bbox")
        if bbox is not None and not isinstance(bbox, list):
            raise ContractError(path, line, f"{where}.bbox", "expected a list")
        lines.append(OcrLine(text=item["text"], conf=None if conf is None else float(conf), bbox=bbox))
    return OcrRecord(
        id=_check_id(_require(obj, "id", (str,), path, line), path, line),
        dataset=_require(obj, "dataset", (str,), path, line),
        split=_require(obj, "split", (str,), path, line, nullable=True),
        image_path=_require(obj, "image_path", (str,), path, line, nullable=True) or None,
        lines=tuple(lines),
        source=str(ocr.get("source") or "ocr"),
    )


def _read_jsonl(path: Path, parse) -> Iterator:
    """Stream a JSONL file, validating each line; duplicate ids are a contract error."""
    return (record for _, record in _read_jsonl_at(path, parse))


def _read_jsonl_at(path: Path, parse) -> Iterator[tuple[tuple[int, int], Any]]:
    """((byte offset, line number), record) of each non-empty line, validated as _read_jsonl says."""
    seen: set[str] = set()
    offset = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            where, offset = (offset, line_no), offset + len(raw)
            record = _parse_line(raw, parse, path, line_no)
            if record is None:
                continue
            if record.id in seen:
                raise ContractError(path, line_no, "id", f"duplicate id {record.id!r}")
            seen.add(record.id)
            yield where, record


def _parse_line(raw: bytes, parse, path: Path, line_no: int):
    """The record on one line; None for a blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ContractError(path, line_no, "<line>", f"invalid UTF-8 at byte {e.start}") from None
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContractError(path, line_no, "<line>", f"invalid JSON: {e.msg} at column {e.colno}") from None
    return parse(obj, path, line_no)


def read_manifest(path: str | Path) -> Iterator[ManifestRecord]:
    return _read_jsonl(Path(path), manifest_record_from_json)


def manifest_positions(path: str | Path) -> list[tuple[int, int]]:
    """(byte offset, line number) of every manifest record, after validating the whole file (the
    errors read_manifest raises, in file order); ~100 bytes per record and no text, so it scales."""
    return [where for where, _ in _read_jsonl_at(Path(path), manifest_record_from_json)]


def read_manifest_at(path: str | Path, positions: Iterable[tuple[int, int]]) -> Iterator[ManifestRecord]:
    """The manifest records at `positions` (from manifest_positions), in the order given."""
    with open(path, "rb") as f:
        for offset, line_no in positions:
            f.seek(offset)
            yield _parse_line(f.readline(), manifest_record_from_json, Path(path), line_no)


def read_ocr(path: str | Path) -> Iterator[OcrRecord]:
    return _read_jsonl(Path(path), ocr_record_from_json)


def load_ocr_index(path: str | Path) -> dict[str, OcrRecord]:
    """OCR by id. OCR records are small (text only), so an index fits in memory at full scale."""
    return {record.id: record for record in read_ocr(path)}


def jsonl_line(record: ManifestRecord | OcrRecord) -> str:
    """One compact JSON object and a newline (UTF-8, no ASCII escaping, stable key order)."""
    return json.dumps(record.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"

