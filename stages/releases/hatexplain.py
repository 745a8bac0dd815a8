"""HateXplain: dataset.json (one object keyed by post_id) + post_id_divisions.json (train/val/test).

Posts in no division (no majority label in the paper's sense) are ingested with split None; the
split stage decides what to do with them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from stages.records import ManifestRecord, make_id
from stages.releases import (LABEL_OUTSIDE, MISSING_LABEL, DatasetSpec, Example, ReleaseError,
                             ReleaseFiles, Skip, json_members, load_json_file)

DATASET = "hatexplain"
SPLITS = ("train", "val", "test")  # plus None for posts in no division
DATA_FILE = "dataset.json"
DIVISIONS_FILE = "post_id_divisions.json"
LABELS = ("hatespeech", "offensive", "normal")

log = logging.getLogger(__name__)


def read_release(folder: Path) -> Iterator[Example | Skip]:
    files = ReleaseFiles(folder, [DATA_FILE, DIVISIONS_FILE])
    files.require_any([DATA_FILE])
    data_path = files.file(DATA_FILE)
    divisions_path = files.file(DIVISIONS_FILE)
    split_of = _read_divisions(divisions_path) if divisions_path else {}
    if not divisions_path:
        log.warning("%s: no %s found; every post gets split None", folder, DIVISIONS_FILE)
    posts = load_json_file(data_path, dict, "one JSON object keyed by post_id")
    unsplit = 0
    for post in json_members(data_path, posts, "post", _problem):
        if isinstance(post, Skip):
            yield post
            continue
        split = split_of.get(post.id)
        unsplit += split is None
        record = ManifestRecord(
            id=make_id(DATASET, split, post.id), dataset=DATASET, split=split, image_path=None,
            text_raw=" ".join(post.value["post_tokens"]),
            labels_raw={"annotators": post.value["annotators"], "rationales": post.value["rationales"]})
        yield Example(record, None, post.where)
    if unsplit and divisions_path:
        log.warning("%s: %d post(s) are in no division of %s; ingested with split None", folder, unsplit,
                    DIVISIONS_FILE)
    missing = sorted(set(split_of) - set(posts))
    if missing:
        log.warning("%s: %d id(s) listed in %s have no post in %s, e.g. %s", folder, len(missing),
                    DIVISIONS_FILE, DATA_FILE, missing[:3])


def _read_divisions(path: Path) -> dict[str, str]:
    divisions = load_json_file(path, dict, "an object {split: [post_id, ...]}")
    split_of: dict[str, str] = {}
    for split in sorted(divisions):
        ids = divisions[split]
        if not isinstance(ids, list):
            raise ReleaseError(path, None, f"split {split!r}: expected a list of post ids")
        for post_id in ids:
            if post_id in split_of and split_of[post_id] != split:
                raise ReleaseError(path, None, f"post {post_id!r} is in two splits: {split_of[post_id]} and {split}")
            split_of[post_id] = split
    return split_of


def _problem(post_id: str, post) -> tuple[str, str] | None:
    """(reason, detail) when a post cannot be used, else None."""
    if not post_id.strip():
        return "empty id", "post_id is empty"
    if not isinstance(post, dict):
        return "malformed post", f"expected an object, got {type(post).__name__}"
    for key, kind in (("annotators", list), ("rationales", list), ("post_tokens", list)):
        if not isinstance(post.get(key), kind):
            return "malformed post", f"{key} missing or not a list"
    if not post["annotators"]:
        return MISSING_LABEL, "annotators is empty (every HateXplain post is labelled)"
    if not all(isinstance(t, str) for t in post["post_tokens"]):
        return "malformed post", "post_tokens must be strings"
    for annotator in post["annotators"]:
        if not isinstance(annotator, dict) or annotator.get("label") not in LABELS:
            return LABEL_OUTSIDE, f"annotator {annotator!r:.80}"
    if post.get("post_id", post_id) != post_id:
        return "malformed post", f"post_id field {post.get('post_id')!r} differs from its key"
    return None


SPEC = DatasetSpec(DATASET, read_release, SPLITS, label_values={"annotators[].label": frozenset(LABELS)})
