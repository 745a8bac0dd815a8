"""Content duplicates for the split stage: image hashes, content groups, exact copies.

Content groups (union-find): same image file, same image bytes (sha256), perceptual hash within a
threshold of bits, or the same normalised text (text_raw + OCR; text.comparison_key with
compatibility folding; empty text never groups). Exact duplicates: same group, dataset and split,
image, text and unified labels.
"""
from __future__ import annotations

import functools
import hashlib
import io
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from stages.console import Progress
from stages.parallel import OrderedPool
from stages.records import ManifestRecord, OcrRecord, outside_roots, read_regular, resolve_image_path
from stages.text import comparison_key

EXAMPLES = 5  # example ids kept per reported item
NOT_HASHED = ("missing", "undecodable", "not_a_file", "unsafe_path")   # ImageHash statuses besides "ok"
SMALL_BATCH = 64  # fewer images than this are hashed in-process: a Pool costs more than it saves


# ------------------------------------------------------------------ image hashing


@dataclass(frozen=True)
class ImageHash:
    status: str                      # "ok" | "missing" | "not_a_file" | "unsafe_path" | "undecodable"
    sha256: str | None = None
    phash: int | None = None         # 64-bit perceptual hash as an int


def hash_image(path: Path, image_dirs: list[Path] | None = None) -> ImageHash:
    """sha256 of the bytes and imagehash.phash of the picture; failures are a status, not an error.
    With `image_dirs`, a path resolving outside them is not opened (pack's rule, `unsafe_path`); only
    regular files are read (a FIFO or device: `not_a_file`)."""
    import imagehash
    from PIL import Image

    if image_dirs is not None and outside_roots(path, image_dirs):
        return ImageHash("unsafe_path")
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return ImageHash("missing")
    except OSError:
        return ImageHash("not_a_file" if path.exists() else "missing")
    sha = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and other warnings: pack judges images
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse from the header
            with Image.open(io.BytesIO(data)) as img:
                img.draft("L", (128, 128))   # JPEG: let the decoder downscale; phash works on 32x32
                bits = imagehash.phash(img).hash.flatten()
    except Exception:  # noqa: BLE001 - any decoder failure means "not hashable"; pack decides
        return ImageHash("undecodable", sha256=sha)
    return ImageHash("ok", sha256=sha, phash=int("".join("1" if b else "0" for b in bits), 2))


def _hash_one(image_path: str, root: Path, image_dirs: list[Path] | None) -> ImageHash:
    return hash_image(resolve_image_path(image_path, root), image_dirs)


def hash_images(image_paths: list[str], root: Path, workers: int, progress: bool = False,
                image_dirs: list[Path] | None = None) -> list[ImageHash]:
    """Hash images in a process pool; an ordered map, so results never depend on the worker count."""
    workers = 1 if len(image_paths) < SMALL_BATCH else workers
    with Progress("hashing images", len(image_paths), unit="images", enabled=progress) as bar, \
            OrderedPool(workers) as pool:
        hashes = []
        for _, image_hash in pool.map(functools.partial(_hash_one, root=root, image_dirs=image_dirs), image_paths):
            hashes.append(image_hash)
            bar.advance()
        return hashes


# ------------------------------------------------------------------ content groups


def record_text(record: ManifestRecord, ocr: OcrRecord | None) -> str:
    """The text a record is grouped by: text_raw and its OCR lines, compatibility-folded."""
    parts = [record.text_raw or ""] + ([line.text for line in ocr.lines] if ocr else [])
    return comparison_key(" ".join(parts), compatibility=True)


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)  # the smallest index is the root: order-independent
        return True


def near_phash_pairs(hashes: np.ndarray, threshold: int, brute_force_below: int = 512) -> Iterator[tuple[int, int]]:
    """Index pairs (i < j) of 64-bit hashes within `threshold` bits, without O(n^2) comparisons.

    Multi-index hashing: cut the bits into threshold+1 bands; two hashes differing in at most
    `threshold` bits agree exactly on at least one band (pigeonhole), so only hashes sharing a
    band value are compared. A bucket that stays large (biased bits: many hashes share a band)
    is split again the same way on its remaining bits, so skewed real-world hashes stay cheap.
    A pair may be yielded more than once.
    """
    yield from _band_pairs(np.arange(len(hashes)), hashes, list(range(64)), threshold, brute_force_below)


def _band_pairs(members: np.ndarray, hashes: np.ndarray, bits: list[int], threshold: int, small: int):
    if len(members) <= small or len(bits) <= threshold + 1:
        yield from _close_pairs(members, hashes, threshold)
        return
    for band in np.array_split(np.array(bits), threshold + 1):
        mask = np.uint64(sum(1 << int(b) for b in band))
        keys = hashes[members] & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        rest = [b for b in bits if b not in set(band.tolist())]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
            yield from _band_pairs(members[order[s:e]], hashes, rest, threshold, small)


def _close_pairs(members: np.ndarray, hashes: np.ndarray, threshold: int, block: int = 1024):
    members = np.sort(members)
    for start in range(0, len(members), block):
        rows = members[start:start + block]
        dist = np.bitwise_count(hashes[rows][:, None] ^ hashes[members][None, :])
        for r, c in zip(*np.nonzero(dist <= threshold)):
            if rows[r] < members[c]:
                yield int(rows[r]), int(members[c])


def content_groups(records: list[ManifestRecord], texts: list[str], hashes: list[ImageHash | None],
                   threshold: int) -> tuple[list[int], dict[str, Any]]:
    """Group id (smallest member index) per record, plus link counts and examples per kind."""
    uf = UnionFind(len(records))
    links: dict[str, list] = {"image_path": [], "sha256": [], "phash": [], "text": []}

    def link_by_key(kind: str, keys: Iterable[tuple[int, Any]]):
        first: dict[Any, int] = {}
        for i, key in keys:
            if key in first:
                if uf.union(first[key], i):
                    links[kind].append((first[key], i))
            else:
                first[key] = i

    # the same file is the same image even when it cannot be read (then it has no sha256)
    link_by_key("image_path", ((i, r.image_path) for i, r in enumerate(records) if r.image_path))
    link_by_key("sha256", ((i, h.sha256) for i, h in enumerate(hashes) if h and h.sha256))
    link_by_key("text", ((i, t) for i, t in enumerate(texts) if t))
    phash_owner: dict[int, int] = {}
    for i, h in enumerate(hashes):
        if h and h.phash is not None:
            if h.phash in phash_owner:
                if uf.union(phash_owner[h.phash], i):
                    links["phash"].append((phash_owner[h.phash], i))
            else:
                phash_owner[h.phash] = i
    distinct = list(phash_owner.items())
    values = np.array([v for v, _ in distinct], dtype=np.uint64)
    for a, b in near_phash_pairs(values, threshold):
        if uf.union(distinct[a][1], distinct[b][1]):
            links["phash"].append((distinct[a][1], distinct[b][1]))
    groups = [uf.find(i) for i in range(len(records))]
    summary = {kind: {"merges": len(pairs), "examples": [[records[a].id, records[b].id] for a, b in pairs[:EXAMPLES]]}
               for kind, pairs in links.items()}
    return groups, summary



# ------------------------------------------------------------------ exact and cross-split copies


def exact_duplicates(records, texts, hashes, labels, groups, split_of,
                     protected: list[bool]) -> tuple[dict[int, int], dict[int, int]]:
    """(dropped, kept duplicates), each index -> the index of the copy that stays: same dataset,
    split, image (bytes, or the same file when it cannot be read), text and unified labels.

    `protected` marks examples of official evaluation files. When a set of copies holds any, the
    first one's file keeps all of its copies (reported as kept duplicates); copies from other
    official files and every unprotected copy are dropped. Otherwise the first copy stays."""
    copies: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if labels[i] is None or (not r.image_path and not texts[i]):
            continue  # unmappable labels or no content at all: never dropped
        h = hashes[i]
        image = (h.sha256 if h and h.sha256 else f"path:{r.image_path}") if r.image_path else None
        copies[groups[i], r.dataset, split_of[i], image, texts[i], repr(labels[i].to_json()["labels"])].append(i)
    dropped: dict[int, int] = {}
    kept_duplicates: dict[int, int] = {}
    for members in copies.values():
        official = [i for i in members if protected[i]]
        keeper = official[0] if official else members[0]
        for i in members:
            if i == keeper:
                continue
            same_file = protected[i] and records[i].split == records[keeper].split
            (kept_duplicates if same_file else dropped)[i] = keeper
    return dropped, kept_duplicates


@dataclass(frozen=True)
class Duplicates:
    """What de-duplication did; indices into the records."""
    exact_dropped: dict[int, int]    # dropped -> the copy kept
    exact_kept: dict[int, int]       # duplicate inside one official evaluation file, kept -> its first copy
    crossing: dict[int, set[str]]    # content group -> the splits it spans
    cross_dropped: list[int]         # dropped from a later split (drop_cross_split_duplicates)
    official_in_later_split: list[int]  # official evaluation examples in a later split of such a group: kept


def cross_split_groups(groups, split_of, kept: list[bool]) -> dict[int, set[str]]:
    spans: dict[int, set[str]] = defaultdict(set)
    for i, g in enumerate(groups):
        if kept[i]:
            spans[g].add(split_of[i])
    return {g: s for g, s in spans.items() if len(s) > 1}
