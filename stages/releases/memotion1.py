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

import contextlib
import logging
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from stages.pilot_kit import PilotExample, csv_writer, ocr_noise, pick, random_code, save_image
from stages.records import ManifestRecord, make_id
from stages.releases import (LABEL_OUTSIDE, DatasetSpec, Example, PilotRecipe, ReleaseError, ReleaseFiles, Skip,
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


# ---------------------------------------------------------------- the pilot's miniature (Memotion 2's too)


def pilot_labels(ex: PilotExample, sarcasm_values: tuple[str, ...]) -> list[str]:
    """humour, sarcasm, offensive, motivational, overall_sentiment. The offensive grade follows the
    class: abusive -> mostly hateful_offensive, benign -> mostly not_offensive."""
    rng = ex.rng("labels")
    if ex.abusive:
        offensive = pick(rng, {"hateful_offensive": 0.88, "very_offensive": 0.12})
        sentiment = rng.choices(SENTIMENT, weights=(3, 4, 2, 1, 0.5))[0]
    else:
        offensive = pick(rng, {"not_offensive": 0.9, "slight": 0.1})
        sentiment = rng.choices(SENTIMENT, weights=(0.5, 1, 3, 4, 2))[0]
    humour = rng.choices(HUMOUR, weights=(2, 4, 3, 1))[0]
    sarcasm = rng.choices(sarcasm_values, weights=(4, 3, 2, 1))[0]
    motivational = rng.choices(MOTIVATIONAL, weights=(8, 2))[0]
    return [humour, sarcasm, offensive, motivational, sentiment]


def pilot_gold_code(labels: list[str]) -> str:
    """Meme_groundTruth.csv's Labels: <sentiment -1|0|1>_<4 binary>_<4 intensities>."""
    humour, sarcasm, offensive, motivational, sentiment = labels
    grades = [HUMOUR.index(humour), SARCASM.index(sarcasm), OFFENSIVE.index(offensive),
              MOTIVATIONAL.index(motivational)]
    polarity = {"very_negative": -1, "negative": -1, "neutral": 0, "positive": 1, "very_positive": 1}[sentiment]
    return f"{polarity}_{''.join('1' if g else '0' for g in grades)}_{''.join(map(str, grades))}"


PILOT_EXTENSIONS = {"jpg": 0.7, "png": 0.17, "jpeg": 0.07, "JPG": 0.03, "PNG": 0.03}
PILOT_TOPICS = ("10_year", "cat", "coffee", "dog", "friends", "minions", "office", "school", "weekend")


def pilot_extension(ex: PilotExample) -> str:
    """Mixed extensions (all five appear even in a small pilot); the content matches the name."""
    first = list(PILOT_EXTENSIONS)
    return first[ex.index] if ex.index < len(first) else pick(ex.rng("extension"), PILOT_EXTENSIONS)


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """memotion_dataset_7k/labels.csv (pandas index column, CRLF, quoted newlines) + images/;
    memotion_test_data/test_data/2000_testdata.csv + Meme_groundTruth.csv + 2000_data/."""
    train_dir = folder / "memotion_dataset_7k"
    test_dir = folder / "memotion_test_data" / "test_data"
    with contextlib.ExitStack() as stack:
        train = csv_writer(stack, train_dir / "labels.csv", ["", "image_name", "text_ocr", "text_corrected", "humour",
                                                             "sarcasm", "offensive", "motivational",
                                                             "overall_sentiment"], crlf=True)
        test = csv_writer(stack, test_dir / "2000_testdata.csv",
                          ["Image_name", "Image_URL", "OCR_extracted_text", "corrected_text"], crlf=True)
        gold = csv_writer(stack, test_dir / "Meme_groundTruth.csv", ["Image_name", "Labels"], crlf=True)
        for ex in rows:
            rng = ex.rng("fields")
            ext = pilot_extension(ex)
            labels = pilot_labels(ex, SARCASM)
            text_ocr = ocr_noise(ex.text, rng)
            corrected = "" if rng.random() < 0.04 else ex.text  # a few rows only have the OCR text
            if ex.split == "train":
                name = f"image_{counts['train'] + 1}.{ext}"
                train.writerow([counts["train"], name, text_ocr, corrected, *labels])
                image_path = train_dir / "images" / name
            else:
                code = random_code(rng, 6, string.ascii_lowercase + string.digits)
                name = f"{rng.choice(PILOT_TOPICS)}_{code}.{ext}"
                test.writerow([name, f"https://i.imgflip.com/{code}.{ext.lower()}", text_ocr, corrected])
                gold.writerow([name, pilot_gold_code(labels)])
                image_path = test_dir / "2000_data" / name
            save_image(ex.image, image_path, "png" if ext.lower() == "png" else "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


def style_pilot(core: str, rng: random.Random) -> str:
    """Memotion captions: often upper case, some in two parts on two lines (quoted newlines)."""
    text = core.upper() if rng.random() < 0.4 else core.capitalize()
    words = text.split(" ")
    if rng.random() < 0.15 and len(words) > 3:
        cut = len(words) // 2
        text = " ".join(words[:cut]) + "\n" + " ".join(words[cut:])
    return text


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True, label_values=ALLOWED,
                   pilot=PilotRecipe(split_slots={"train": 16, "test": 4}, abusive_share=0.35, write=write_pilot,
                                     style=style_pilot))
