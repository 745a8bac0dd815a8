"""Datasets: one module per dataset, each exporting `SPEC` (a `DatasetSpec`), and what they share.

A spec holds the dataset's reader, its original split names, whether it has images and the raw
label values its reader lets through. Nothing here knows the built-in pilot: its writers live in
stages/pilot/<name>.py, so ingest's code never changes with them. A reader `read(folder)` streams
`Example`s (a manifest record plus, for memes, the transcription shipped with the release as an
OCR record) and `Skip`s (a row it could not use, with file, line and reason) in file order.
Readers never need the image files.

Files are located by name anywhere below the dataset folder (`ReleaseFiles`), so both the
pilot's layout and an unzipped real release work.

Adding a dataset = one module here exporting SPEC, plus its entry in Step_3/label_taxonomy.json
(tests/test_dataset_specs.py checks the two agree): the registry below finds the module, and
ingest, the CLI name checks and the benchmarks derive their dataset lists from it. To have it in
the built-in pilot too, add stages/pilot/<name>.py exporting RECIPE and list it in stages/pilot.

Rules every adapter follows through the shared helpers below:
- text files are UTF-8 (a BOM is allowed); a byte that is not is an error naming file, line and
  column (`text_lines`, `csv_rows`, `load_json_file`): a wrong encoding affects the whole file;
- a release file with no records (0 bytes, blank lines, a header alone, an empty JSON object) is
  a warning naming the file (the pilot at tiny sizes writes such files); a dataset with no usable
  record at all is an error (stages.ingest);
- a path built from the data (an image or a per-example file) must stay inside the release
  folder: an absolute path, one climbing out with `..`, or an existing file that is (or sits
  behind) a symlink resolving outside the folder is a counted skip `unsafe_path` (`release_path`);
- a row of a split that the release labels, but without a label, is a counted skip
  `missing_label` (never silently kept as unlabeled);
- a table row that is short, has an empty id or a label value outside the release's documented
  vocabulary is a counted skip (`table_rows`, `label_skip`).
"""
from __future__ import annotations

import csv
import filecmp
import importlib
import json
import logging
import os
import pkgutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from stages.errors import InputError
from stages.records import ManifestRecord, OcrLine, OcrRecord, outside_roots

log = logging.getLogger(__name__)
UNSAFE_PATH = "unsafe_path"      # a data-derived path leaving the release folder (skip reason)
MISSING_LABEL = "missing_label"  # a row without a label in a split the release labels (skip reason)
LABEL_OUTSIDE = "label value outside the documented set"  # skip reason


@dataclass(frozen=True)
class Example:
    manifest: ManifestRecord
    ocr: OcrRecord | None
    where: str = ""  # "file:line" of the record, for messages about it (e.g. duplicate ids)


@dataclass(frozen=True)
class Skip:
    """A row an adapter could not use. `reason` is a category (counted); `detail` the specifics."""
    file: str
    line: int
    reason: str
    detail: str = ""


class ReleaseError(InputError):
    """A release cannot be read at all (missing/ambiguous file, broken header, invalid JSON file)."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")


Item = Example | Skip


# ---------------------------------------------------------------- locating files


class ReleaseFiles:
    """The `wanted` files and every folder below a dataset folder, by name (one sorted walk).

    Only wanted names are kept: a real release holds ~10^5 images we must not index.
    """

    def __init__(self, folder: Path, wanted: Iterable[str]):
        folder = Path(folder)
        if not folder.is_dir():
            raise ReleaseError(folder, None, "dataset folder does not exist")
        self.folder = folder
        self._files: dict[str, list[Path]] = {name: [] for name in wanted}
        self._dirs: dict[str, list[Path]] = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            base = Path(dirpath)
            for name in dirnames:
                self._dirs.setdefault(name, []).append(base / name)
            for name in filenames:
                if name in self._files:
                    self._files[name].append(_regular(base / name))

    def file(self, *names: str) -> Path | None:
        """The file with the first of `names` present; two different files of one name -> error."""
        for name in names:
            paths = sorted(self._files[name])  # KeyError: `name` was not declared as wanted
            if paths:
                first = paths[0]
                for other in paths[1:]:
                    if not filecmp.cmp(first, other, shallow=False):
                        raise ReleaseError(self.folder, None, f"two different files named {name!r}: "
                                           f"{first} and {other}; keep one")
                return first
        return None

    def dir(self, name: str, default: Path) -> Path:
        """The first folder called `name` (sorted), else `default` (images may not be there yet)."""
        paths = sorted(self._dirs.get(name, []))
        return paths[0] if paths else default

    @classmethod
    def per_split(cls, folder: Path, pattern: str,
                  splits: Iterable[str]) -> tuple["ReleaseFiles", list[tuple[str, Path]]]:
        """A release of one file per split, named by `pattern` ("{split}.jsonl"): the files and
        (split, path) of each present one, in the order of `splits`; none present -> error."""
        names = {split: pattern.format(split=split) for split in splits}
        files = cls(folder, names.values())
        files.require_any(names.values())
        return files, [(split, files.file(name)) for split, name in names.items() if files.file(name)]

    def require_any(self, names: Iterable[str]) -> None:
        names = list(names)
        if not any(self._files[name] for name in names):
            raise ReleaseError(self.folder, None, "unknown layout: none of the expected files was found "
                               f"(expected any of: {', '.join(names)})")


def _regular(path: Path) -> Path:
    """`path` when it is a regular file (symlinks followed); a FIFO would hang the reader, a device
    never end: a ReleaseError instead."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ReleaseError(path, None, f"cannot be read: {e.strerror} (a broken symlink?)") from None
    if not stat.S_ISREG(mode):
        raise ReleaseError(path, None, "not a regular file (a FIFO, device or socket); "
                           "put the release file itself here")
    return path


# ---------------------------------------------------------------- reading rows


def text_lines(path: Path, newline: str | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file (BOM allowed); a non-UTF-8 byte is a ReleaseError
    naming the line; a file without a non-blank line is warned about (see the module docstring)."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=newline) as f:
        found = False
        for number, text in enumerate(f, start=1):
            if not text.isascii():
                _check_utf8(path, number, text)
            found = found or bool(text.strip())
            yield number, text
    if not found:
        log.warning("%s: empty file: no records", path)


def _check_utf8(path: Path, line: int, text: str) -> None:
    """`text` was decoded with surrogateescape: a lone surrogate stands for an undecodable byte."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(text[e.start]) - 0xDC00
        raise ReleaseError(path, line, f"not valid UTF-8: byte 0x{byte:02x} at column {e.start + 1}; "
                           "re-save the file as UTF-8") from None


def csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) per record; RFC-4180 quoting, CRLF and embedded newlines, BOM."""
    reader = csv.reader((text for _, text in text_lines(path, newline="")), delimiter=delimiter)
    start = 1
    try:
        for fields in reader:
            yield start, fields
            start = reader.line_num + 1
    except csv.Error as e:
        raise ReleaseError(path, start, f"unreadable CSV: {e}") from None


def csv_table(path: Path, delimiter: str = ",") -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and the non-blank data rows of a CSV; a file without a header is a ReleaseError,
    one without data rows is warned about."""
    rows = csv_rows(path, delimiter)
    first = next(rows, None)
    if first is None:
        raise ReleaseError(path, 1, "empty file (expected a header)")
    header = first[1]

    def data() -> Iterator[tuple[int, list[str]]]:
        found = False
        for line, fields in rows:
            if fields:  # csv yields [] for blank lines
                found = True
                yield line, fields
        if not found:
            log.warning("%s: no records after the header", path)
    return header, data()


def header_index(path: Path, header: list[str], required: Iterable[str],
                 normalise: Callable[[str], str] = str.strip) -> dict[str, int]:
    """Column positions by `normalise`d name (empty names are unnamed columns); a missing required
    column or a name given twice (which column would hold it?) is an error naming the file."""
    index: dict[str, int] = {}
    for i, raw in enumerate(header):
        name = normalise(raw)
        if name in index:
            raise ReleaseError(path, 1, f"column {name!r} is in the header twice (columns {index[name] + 1} and "
                               f"{i + 1}); keep one")
        if name:
            index[name] = i
    missing = [name for name in required if name not in index]
    if missing:
        raise ReleaseError(path, 1, f"header lacks column(s) {missing}; header is {header}")
    return index


@dataclass(frozen=True)
class TableRow:
    """A data row of a release table: its id and, when read from the row, its checked labels."""
    line: int
    id: str
    fields: list[str]
    labels: dict[str, str] | None = None


def table_rows(path: Path, rows: Iterable[tuple[int, list[str]]], needed: int, id_column: int,
               labels: dict[str, int] | None = None, allowed: dict[str, Iterable] | None = None
               ) -> Iterator[TableRow | Skip]:
    """Each (line, fields) as a TableRow, or as the Skip of a row shorter than `needed` columns,
    an empty id, or a label value outside `allowed`. `labels`: label name -> column; None when the
    row's labels come from elsewhere (a gold file)."""
    for line, fields in rows:
        if len(fields) < needed:
            yield Skip(str(path), line, "row with missing columns", f"{len(fields)} of {needed} columns")
            continue
        row_id = fields[id_column].strip()
        if not row_id:
            yield Skip(str(path), line, "empty id")
            continue
        values = None if labels is None else {name: fields[i] for name, i in labels.items()}
        skip = values and label_skip(path, line, values, allowed or {})
        yield skip or TableRow(line, row_id, fields, values)


def label_skip(path: Path, line: int, labels: dict[str, Any], allowed: dict[str, Iterable]) -> Skip | None:
    """The Skip of a row with a present label outside the release's documented vocabulary."""
    bad = check_values(labels, allowed)
    return Skip(str(path), line, LABEL_OUTSIDE, bad) if bad else None


def load_json_file(path: Path, kind: type = dict, what: str = "one JSON object") -> Any:
    """A whole JSON file holding a `kind` (an empty one is warned about); errors name the file and line."""
    data = Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ReleaseError(path, line, f"not valid UTF-8: byte 0x{data[e.start]:02x} at column {column}; "
                           "re-save the file as UTF-8") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReleaseError(path, e.lineno, f"invalid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(value, kind):
        raise ReleaseError(path, 1, f"expected {what}, got {type(value).__name__}")
    if not value:
        log.warning("%s: empty file: no records (an empty %s)", path, kind.__name__)
    return value


@dataclass(frozen=True)
class JsonMember:
    """A member of a release's JSON object keyed by id (HateXplain posts, MMHS150K tweets)."""
    number: int   # its position, from 1 (JSON objects have no useful line numbers)
    id: str
    value: Any
    where: str    # "file: post #n ('id')", for messages


def json_members(path: Path, members: dict[str, Any], what: str,
                 problem: Callable[[str, Any], tuple[str, str] | None]) -> Iterator[JsonMember | Skip]:
    """Each member of `members` (read from `path`), or the Skip that `problem(id, value)` names."""
    for number, (key, value) in enumerate(members.items(), start=1):
        member = JsonMember(number, key, value, f"{path}: {what} #{number} ({key!r})")
        found = problem(key, value)
        yield Skip(str(path), number, found[0], f"{member.where}: {found[1]}") if found else member


def release_path(root: Path, base: Path, name: str, file: Path, line: int) -> Path | Skip:
    """`base / name` for a file name taken from the data, or an `unsafe_path` Skip when it leaves
    the release folder `root`: absolute, `..` climbing out, or (when it exists) resolving outside
    through a symlink. Missing files are fine (images need not exist at ingest)."""
    relative = name.replace("\\", "/")
    if relative.startswith("/") or relative[1:3] in (":/", ":") and relative[0].isalpha():  # POSIX or drive
        return Skip(str(file), line, UNSAFE_PATH, f"absolute path {name!r:.200}")
    path = Path(base) / relative
    problem = outside_roots(path, [Path(root)])
    if problem:
        return Skip(str(file), line, UNSAFE_PATH, f"{name!r:.200} {problem}")
    return path


def check_values(labels: dict[str, Any], allowed: dict[str, Iterable]) -> str | None:
    """The first present label whose value is outside the release's documented vocabulary, as a message."""
    for key, values in allowed.items():
        if key in labels and labels[key] not in values:
            return f"{key}={labels.get(key)!r:.80} is not one of {sorted(values, key=str)}"
    return None


def transcription(record: ManifestRecord, text: str | None) -> OcrRecord | None:
    """A release's own meme text as a one-line OCR record (none when the text is empty)."""
    if text is None or not text.strip():
        return None
    return OcrRecord(id=record.id, dataset=record.dataset, split=record.split, image_path=record.image_path,
                     lines=(OcrLine(text=text),), source="dataset_transcription")


# ---------------------------------------------------------------- the dataset spec


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline knows about one dataset; its module exports it as `SPEC`.

    `label_values`: raw label field -> the values `read` lets through (what it checks; compared
    with Step_3/label_taxonomy.json by a test). A field `f[]` is each item of the list `f`,
    `f[].k` the key `k` of each item."""
    name: str
    read: Callable[[Path], Iterator[Item]]   # the release folder -> Examples and Skips, in file order
    splits: tuple[str, ...]                  # the original split names the release uses
    label_values: dict[str, Iterable]
    has_images: bool = False


# ---------------------------------------------------------------- registry

# Every module of this package but this file is a dataset module exporting SPEC. Ingest reads the
# datasets in this order, which fixes the manifest (hence shard) order: the original seven as they
# have always been read, then any other by name.
_FIRST = ("hateful_memes", "mami", "mmhs150k", "memotion1", "memotion2", "hatexplain", "olid")
SPECS: dict[str, DatasetSpec] = {}   # the registry: name -> spec, in ingest order


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry (the modules of this package are added on import)."""
    if spec.name in SPECS:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    SPECS[spec.name] = spec
    return spec


def _register_modules() -> None:
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    for name in [name for name in _FIRST if name in names] + [name for name in names if name not in _FIRST]:
        register(importlib.import_module(f"{__name__}.{name}").SPEC)


_register_modules()
DATASETS: tuple[str, ...] = tuple(SPECS)   # the datasets of this package (a test may register more)


def spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(SPECS)}")
    return SPECS[name]


def read_release(name: str, folder: Path) -> Iterator[Item]:
    return spec(name).read(Path(folder))
