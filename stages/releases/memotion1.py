"""Memotion 1.0 (SemEval-2020 Task 8).

train: memotion_dataset_7k/labels.csv (leading unnamed index column, image_name, text_ocr,
       text_corrected, 5 labels; CRLF, quoted fields with newlines) + images/<image_name>;
       or the data_6512.csv variant (Image_name, Image_URL, OCR_extracted_text, Corrected_text,
       Humour, ...) of the same annotations, used when labels.csv is absent.
test:  2000_testdata.csv (Image_name, Image_URL, OCR_extracted_text, corrected_text) joined with
       Meme_groundTruth.csv (also shipped as "Meme_groundTruth .csv") whose Labels code
       `<sentiment -1|0|1>_<4 binary>_<4 intensities>` is decoded into the train vocabulary.
Ids key on the full image name (extensions are mixed, so the stem alone need not be unique).
Values outside the documented vocabulary (one full-file row has a corrupted sentiment) are
counted skips.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (LABEL_OUTSIDE, DatasetSpec, Example, ReleaseError, ReleaseFiles, Skip,
                             TableRow, csv_table, header_index, release_path, table_rows, transcription)

DATASET = "memotion1"
SPLITS = ("train", "test")
TRAIN_FILES = ("labels.csv", "data_6512.csv")
TEST_FILE = "2000_testdata.csv"
GOLD_FILES = ("Meme_groundTruth.csv", "Meme_groundTruth .csv")
HUMOUR = ("not_funny", "funny", "very_funny", "hilarious")
SARCASM = ("not_sarcastic", "general", "twisted_meaning", "very_twisted")
OFFENSIVE = ("not_offensive", "slight", "very_offensive", "hateful_offensive")
MOTIVATIONAL = ("not_motivational", "motivational")
SENTIMENT = ("very_negative", "negative", "neutral", "positive", "very_positive")
ALLOWED = {"humour": set(HUMOUR), "sarcasm": set(SARCASM), "offensive": set(OFFENSIVE),
           "motivational": set(MOTIVATIONAL), "overall_sentiment": set(SENTIMENT)}
# the variants' column names -> the official ones (after lower-casing)
ALIASES = {"ocr_extracted_text": "text_ocr", "corrected_text": "text_corrected"}
GOLD_CODE = re.compile(r"^(-1|0|1)_([01]{4})_([0-3])([0-3])([0-3])([01])$")

log = logging.getLogger(__name__)


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [*TRAIN_FILES, TEST_FILE, *GOLD_FILES])
    files.require_any([*TRAIN_FILES, TEST_FILE])
    train = files.file(TRAIN_FILES[0]) or files.file(TRAIN_FILES[1])
    if train:
        if train.name == TRAIN_FILES[0] and files.file(TRAIN_FILES[1]):
            log.warning("%s: both labels.csv and data_6512.csv found; using labels.csv (same annotations)", folder)
        yield from _read_train(train, files.dir("images", train.parent / "images"), files.folder)
    test = files.file(TEST_FILE)
    if test:
        gold_path = files.file(*GOLD_FILES)
        gold = _read_gold(gold_path) if gold_path else None
        if gold is None:
            log.warning("%s: no Meme_groundTruth.csv found; the test memes are ingested unlabeled", folder)
        yield from _read_test(test, gold_path, gold, files.dir("2000_data", test.parent / "2000_data"), files.folder)


def _table(path: Path, required: list[str]) -> tuple[dict[str, int], int, Iterator[tuple[int, list[str]]]]:
    """The columns of a comma CSV by normalised name, the columns a row needs, and the rows."""
    header, rows = csv_table(path)
    col = header_index(path, header, required, _column_name)
    return col, max(col[name] for name in required) + 1, rows


def _column_name(header: str) -> str:
    """A header cell as the reader names it; pandas' index column ("Unnamed: 0") has no name."""
    name = header.strip().lower()
    return "" if name.startswith("unnamed") else ALIASES.get(name, name)


def _example(split: str, row: TableRow, image_dir: Path, root: Path, labels: dict | None, col: dict[str, int],
             path: Path) -> Example | Skip:
    image = release_path(root, image_dir, row.id, path, row.line)
    if isinstance(image, Skip):
        return image
    text = row.fields[col["text_corrected"]]
    if not text.strip():
        text = row.fields[col["text_ocr"]]
    record = ManifestRecord(id=make_id(DATASET, split, row.id), dataset=DATASET, split=split,
                            image_path=str(image), text_raw=None, labels_raw=labels)
    return Example(record, transcription(record, text), f"{path}:{row.line}")


def _read_train(path: Path, image_dir: Path, root: Path) -> Iterator[Example | Skip]:
    col, needed, rows = _table(path, ["image_name", "text_ocr", "text_corrected", *ALLOWED])
    for row in table_rows(path, rows, needed, col["image_name"], {name: col[name] for name in ALLOWED}, ALLOWED):
        yield row if isinstance(row, Skip) else _example("train", row, image_dir, root, row.labels, col, path)


def _read_gold(path: Path) -> dict[str, tuple[int, str]]:
    """Image_name -> (line, Labels code)."""
    gold: dict[str, tuple[int, str]] = {}
    col, needed, rows = _table(path, ["image_name", "labels"])
    for line, fields in rows:
        if len(fields) < needed or not fields[col["image_name"]].strip():
            raise ReleaseError(path, line, f"expected Image_name,Labels, got {fields}")
        name = fields[col["image_name"]].strip()
        if name in gold:
            raise ReleaseError(path, line, f"duplicate Image_name {name!r} (first on line {gold[name][0]})")
        gold[name] = (line, fields[col["labels"]].strip())
    return gold


def decode_gold(code: str) -> dict[str, str] | None:
    """`1_1101_2101` -> the train vocabulary (sentiment -1/0/1 -> negative/neutral/positive)."""
    match = GOLD_CODE.match(code)
    if not match:
        return None
    sentiment, _, humour, sarcasm, offensive, motivational = match.groups()
    return {"humour": HUMOUR[int(humour)], "sarcasm": SARCASM[int(sarcasm)], "offensive": OFFENSIVE[int(offensive)],
            "motivational": MOTIVATIONAL[int(motivational)],
            "overall_sentiment": {"-1": "negative", "0": "neutral", "1": "positive"}[sentiment]}


def _read_test(path: Path, gold_path: Path | None, gold: dict | None, image_dir: Path,
               root: Path) -> Iterator[Example | Skip]:
    seen = set()
    col, needed, rows = _table(path, ["image_name", "text_ocr", "text_corrected"])
    for row in table_rows(path, rows, needed, col["image_name"]):
        if isinstance(row, Skip):
            yield row
            continue
        seen.add(row.id)
        labels = None
        if gold is not None:
            if row.id not in gold:
                yield Skip(str(path), row.line, "test id without a gold label", f"{row.id} not in {gold_path}")
                continue
            gold_line, code = gold[row.id]
            labels = decode_gold(code)
            if labels is None:
                yield Skip(str(gold_path), gold_line, LABEL_OUTSIDE,
                           f"Labels={code!r:.60} is not <-1|0|1>_<4 binary>_<4 intensities>")
                continue
        yield _example("test", row, image_dir, root, labels, col, path)
    if gold:
        unknown = sorted(set(gold) - seen)
        if unknown:
            log.warning("%s: %d gold label(s) for memes not in %s, e.g. %s", gold_path, len(unknown), TEST_FILE,
                        unknown[:3])


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values=ALLOWED)
