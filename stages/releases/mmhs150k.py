"""MMHS150K: MMHS150K_GT.json (one object keyed by tweet id) + splits/{train,val,test}_ids.txt.

The tweet goes to text_raw; img_txt/<id>.json ({"img_text": ...}, the release's OCR of the image)
becomes the OCR record when present (not every tweet has one). Images: img_resized/<id>.jpg.
Tweets in no split file get split None.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id, read_regular
from stages.releases import (LABEL_OUTSIDE, MISSING_LABEL, DatasetSpec, Example, ReleaseError,
                             ReleaseFiles, Skip, json_members, load_json_file, release_path, text_lines, transcription)

DATASET = "mmhs150k"
SPLITS = ("train", "val", "test")  # plus None for tweets in no split file
GT_FILE = "MMHS150K_GT.json"
LABELS_STR = ("NotHate", "Racist", "Sexist", "Homophobe", "Religion", "OtherHate")

log = logging.getLogger(__name__)


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [GT_FILE, *(f"{split}_ids.txt" for split in SPLITS)])
    files.require_any([GT_FILE])
    gt_path = files.file(GT_FILE)
    split_of, skips = _read_splits(files)
    yield from skips
    image_dir = files.dir("img_resized", gt_path.parent / "img_resized")
    text_dir = files.dir("img_txt", gt_path.parent / "img_txt")
    tweets = load_json_file(gt_path, dict, "one JSON object keyed by tweet id")
    unsplit = 0
    for tweet in json_members(gt_path, tweets, "tweet", _problem):
        if isinstance(tweet, Skip):
            yield tweet
            continue
        image = release_path(folder, image_dir, f"{tweet.id}.jpg", gt_path, tweet.number)
        img_txt = release_path(folder, text_dir, f"{tweet.id}.json", gt_path, tweet.number)
        if isinstance(image, Skip) or isinstance(img_txt, Skip):
            yield image if isinstance(image, Skip) else img_txt
            continue
        split = split_of.get(tweet.id)
        unsplit += split is None
        record = ManifestRecord(
            id=make_id(DATASET, split, tweet.id), dataset=DATASET, split=split,
            image_path=str(image), text_raw=tweet.value["tweet_text"],
            labels_raw={"labels": tweet.value["labels"], "labels_str": tweet.value["labels_str"]})
        img_text, skip = _read_img_txt(img_txt)
        if skip:
            yield skip
        yield Example(record, transcription(record, img_text), tweet.where)
    if unsplit:
        log.warning("%s: %d tweet(s) are in no splits/*_ids.txt file; ingested with split None", folder, unsplit)
    missing = sorted(set(split_of) - set(tweets))
    if missing:
        log.warning("%s: %d id(s) in the split files are not in %s, e.g. %s", folder, len(missing), GT_FILE,
                    missing[:3])


def _read_splits(files: ReleaseFiles) -> tuple[dict[str, str], list[Skip]]:
    split_of: dict[str, str] = {}
    skips: list[Skip] = []
    for split in SPLITS:
        path = files.file(f"{split}_ids.txt")
        if not path:
            log.warning("%s: no %s_ids.txt found", files.folder, split)
            continue
        for line, text in text_lines(path):
            tweet_id = text.strip()
            if not tweet_id:
                continue
            if tweet_id in split_of:
                if split_of[tweet_id] != split:
                    raise ReleaseError(path, line, f"tweet {tweet_id} is also in the {split_of[tweet_id]} split")
                skips.append(Skip(str(path), line, "duplicate id in a split file", tweet_id))
                continue
            split_of[tweet_id] = split
    return split_of, skips


def _read_img_txt(path: Path) -> tuple[str | None, Skip | None]:
    """The release's OCR text of one image; a missing file means none, an unreadable one is a skip."""
    try:
        obj = json.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:   # OSError: a FIFO, device, no permission
        return None, Skip(str(path), getattr(e, "lineno", 1), "unreadable img_txt (example kept without OCR)", str(e))
    if not isinstance(obj, dict) or not isinstance(obj.get("img_text"), str):
        return None, Skip(str(path), 1, "unreadable img_txt (example kept without OCR)", "no string 'img_text'")
    return obj["img_text"], None


def _problem(tweet_id: str, tweet) -> tuple[str, str] | None:
    if not tweet_id.strip():
        return "empty id", "tweet id is empty"
    if not isinstance(tweet, dict):
        return "malformed tweet", f"expected an object, got {type(tweet).__name__}"
    if not isinstance(tweet.get("tweet_text"), str):
        return "row with missing columns", "tweet_text missing or not a string"
    labels, labels_str = tweet.get("labels"), tweet.get("labels_str")
    if not isinstance(labels, list) or not isinstance(labels_str, list):
        return "row with missing columns", "labels / labels_str missing or not lists"
    if not labels or not labels_str:
        return MISSING_LABEL, "labels / labels_str are empty (every MMHS150K tweet is labelled)"
    if not all(type(v) is int and 0 <= v < len(LABELS_STR) for v in labels):
        return LABEL_OUTSIDE, f"labels={labels!r:.80}"
    if not all(v in LABELS_STR for v in labels_str):
        return LABEL_OUTSIDE, f"labels_str={labels_str!r:.80}"
    return None


SPEC = DatasetSpec(DATASET, read_release, SPLITS, has_images=True,
                   label_values={"labels[]": frozenset(range(len(LABELS_STR))), "labels_str[]": frozenset(LABELS_STR)})
