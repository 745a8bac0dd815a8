"""Step 3 splits: assign every manifest id to train/val/test without content leakage.

    python -m stages.split [--manifest FILE] [--ocr FILE] [--label-taxonomy FILE]
                           [--splits OUT] [--report OUT] [--params params.yaml] [--verbose]

1. Official splits are kept (params `split.official`: dataset -> {original split -> train|val|test|
   carve|create}). `carve` divides that original split into train plus every split the dataset's
   mapping does not provide (`carve_ratio` each); `create` (and a null original split) divides it
   80/10/10 (`ratios`). Both are stratified on the unified label (abuse_hate, else offensive) and
   seeded.
2. Content groups (union-find): same image bytes (sha256), perceptual hash within
   `phash_threshold` bits, or the same normalised text (text_raw + OCR, casefolded, punctuation
   and whitespace collapsed; empty text never groups). A group is assigned as a unit wherever
   the split is created/carved; inside official splits cross-split groups are reported (and
   optionally dropped from carved/created val/test parts). Exact duplicates (same dataset and
   split, same image bytes, same text, same labels) keep one copy when `drop_exact_duplicates`.
   An example of an official evaluation file (a release's own val/dev or test file mapped to
   val/test) is never dropped by either rule, so scores stay comparable with the literature:
   duplicates inside one such file are reported and kept; only an exact copy of an example of
   ANOTHER official file of the same split is dropped (Hateful Memes dev_unseen rows copied from
   dev_seen). The report says per dataset whether val/test are official and complete.
3. Checks (Step_3/split_report.json + a table): ids unique, no group across created/carved
   splits, per-class share within +-balance_tolerance across created/carved splits, counts per
   dataset x split x class, duplicate groups. A failed balance check is a warning, not an error.
"""
from __future__ import annotations

import hashlib
import io
import logging
import re
import unicodedata
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from stages import balance
from stages.common import REPO_ROOT, resolve_workers, setup_logging, write_json
from stages.config import Part, parse
from stages.console import Progress
from stages.records import (DIAGNOSTIC_SPLIT, EVAL_SPLITS, SPLITS, ContractError, ManifestRecord, OcrRecord,
                            evaluation_splits, load_ocr_index, read_manifest, resolve_image_path)
from stages.taxonomy import LabelError, Taxonomy, TaxonomyError, UnifiedLabels

log = logging.getLogger(__name__)

OFFICIAL_TARGETS = SPLITS + ("carve", "create")
EVAL_FIELDS = ("abuse_hate", "offensive")  # the binary tasks the experts train on (train.task)
EXAMPLES = 5  # example ids kept per reported item


@dataclass(frozen=True)
class SplitConfig:
    """The tunables of the `split` params group."""
    official: dict[str, dict[str, str]]  # dataset -> original split -> train|val|test|carve|create
    ratios: dict[str, float] = field(  # for datasets (or parts) without an official split
        default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    carve_ratio: float = 0.1  # `carve`: share of the original split moved into each split the dataset lacks
    seed: int = 0  # seeds the stratified assignment
    phash_threshold: int = 4  # max Hamming distance of 64-bit perceptual hashes for "same image"
    drop_exact_duplicates: bool = True  # same dataset+split, image bytes, text and labels: keep one (official files stay whole)
    drop_cross_split_duplicates: bool = False  # drop carved/created val/test examples whose content is in an earlier split
    balance_tolerance: float = 0.05  # per-class share may differ by at most this across created splits
    balance_min_examples: int = 20  # a created/carved split part smaller than this is reported, not judged
    min_eval_labeled: int = field(  # warn when a dataset's val/test part has fewer labelled examples for a field
        default=30, metadata={"min": 0})
    diagnostic_datasets: tuple[str, ...] = ("hatecheck",)  # evaluation only: all to the diagnostic split
    workers: int = field(default=0, metadata={"min": 0})  # image hashing processes; 0 = all cores

    def __post_init__(self):
        bad = {f"{d}.{s}": t for d, m in self.official.items() for s, t in m.items() if t not in OFFICIAL_TARGETS}
        if bad:
            raise ValueError(f"split.official: targets must be one of {OFFICIAL_TARGETS}, got {bad}")
        if set(self.ratios) != set(SPLITS) or any(r < 0 for r in self.ratios.values()) or sum(self.ratios.values()) <= 0:
            raise ValueError(f"split.ratios needs non-negative train/val/test, got {self.ratios}")
        if not 0 <= self.carve_ratio < 0.5:
            raise ValueError(f"split.carve_ratio must be in [0, 0.5), got {self.carve_ratio}")
        if not 0 <= self.phash_threshold < 32:
            raise ValueError(f"split.phash_threshold must be in [0, 32), got {self.phash_threshold}")
        if isinstance(self.diagnostic_datasets, str) or not all(isinstance(d, str) for d in self.diagnostic_datasets):
            raise ValueError(f"split.diagnostic_datasets must be a list of dataset names, got {self.diagnostic_datasets!r}")


@dataclass(frozen=True)
class SplitPaths:
    """The files the stage reads and writes."""
    manifest: Path = field(metadata={"group": "ingest"})  # Step 2 manifest
    ocr: Path = field(metadata={"group": "ingest"})  # Step 2 OCR file
    label_taxonomy: Path  # the label taxonomy JSON
    splits: Path  # output: id -> train|val|test
    report: Path  # output: the checks and counts (a DVC metric)
    image_root: Path = field(  # root relative image paths resolve against (as pack)
        default=REPO_ROOT, metadata={"cli_only": True})


PARTS = (Part("split", SplitConfig), Part("split", SplitPaths))


@dataclass(frozen=True)
class SplitResult:
    splits: dict[str, str]           # id -> train|val|test (sorted by id)
    report: dict[str, Any]


# ------------------------------------------------------------------ image hashing


@dataclass(frozen=True)
class ImageHash:
    status: str                      # "ok" | "missing" | "undecodable"
    sha256: str | None = None
    phash: int | None = None         # 64-bit perceptual hash as an int


def hash_image(path: Path) -> ImageHash:
    """sha256 of the bytes and imagehash.phash of the picture; failures are a status, not an error."""
    import imagehash
    from PIL import Image

    try:
        data = path.read_bytes()
    except OSError:
        return ImageHash("missing")
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


def _hash_one(args: tuple[str, str]) -> ImageHash:
    image_path, root = args
    return hash_image(resolve_image_path(image_path, Path(root)))


def hash_images(image_paths: list[str], root: Path, workers: int, progress: bool = False) -> list[ImageHash]:
    """Hash images in a process pool; ordered imap, so results never depend on the worker count."""
    jobs = ((p, str(root)) for p in image_paths)
    workers = resolve_workers(workers)
    with Progress("hashing images", len(image_paths), unit="images", enabled=progress) as bar:
        def advance(image_hash: ImageHash) -> ImageHash:
            bar.advance()
            return image_hash
        if workers == 1 or len(image_paths) < 64:
            return [advance(_hash_one(job)) for job in jobs]
        with Pool(workers) as pool:
            return [advance(h) for h in pool.imap(_hash_one, jobs, chunksize=32)]


# ------------------------------------------------------------------ content groups


def normalise_text(text: str) -> str:
    """Casefolded, NFKC, every run of punctuation/symbols/whitespace collapsed to one space."""
    return " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).casefold()).split())


def record_text(record: ManifestRecord, ocr: OcrRecord | None) -> str:
    parts = [record.text_raw or ""] + ([line.text for line in ocr.lines] if ocr else [])
    return normalise_text(" ".join(parts))


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


# ------------------------------------------------------------------ assignment


def stratum(labels: UnifiedLabels | None) -> str:
    """The class a record is stratified and balance-checked on (balance.stratum)."""
    if labels is None:
        return balance.stratum(None, None, None)
    return balance.stratum(labels.labeled, labels.abuse_hate, labels.offensive)


def pool_targets(dataset: str, kind: str, config: SplitConfig) -> dict[str, float]:
    """Target shares of a created (`create`) or carved (`carve`) pool of one dataset."""
    if kind == "create":
        total = sum(config.ratios.values())
        return {s: config.ratios[s] / total for s in SPLITS if config.ratios[s] > 0}
    provided = set(config.official.get(dataset, {}).values())
    missing = [s for s in SPLITS if s != "train" and s not in provided]
    return {"train": 1 - config.carve_ratio * len(missing), **{s: config.carve_ratio for s in missing}}


def _order_key(seed: int, record_id: str) -> str:
    """Seeded, per-group shuffle key: a group's place does not depend on unrelated records."""
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def assign_splits(records: list[ManifestRecord], strata: list[str], groups: list[int],
                  config: SplitConfig) -> tuple[list[str], list[str | None]]:
    """Split per record, and its pool kind ("carve"/"create"; None when official).

    Pool members of a group land together: with the group's official members when a pool may
    use that split, else in the split a greedy stratified assignment picks (largest groups
    first, seeded order; the split with the largest relative deficit of the group's classes).
    """
    kinds = [_pool_kind(r, config) for r in records]
    split_of: list[str | None] = [k if k in SPLITS else None for k in kinds]
    pools = [None if k in SPLITS else k for k in kinds]
    targets = {(r.dataset, k): pool_targets(r.dataset, k, config) for r, k in zip(records, pools) if k}
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    need: Counter = Counter()                     # (pool, stratum) -> pool size
    for i, k in enumerate(pools):
        if k:
            need[(records[i].dataset, k), strata[i]] += 1
    have: Counter = Counter()                     # (pool, stratum, split) -> assigned
    pending = [g for g, idx in members.items() if any(pools[i] for i in idx)]
    pending.sort(key=lambda g: (-sum(1 for i in members[g] if pools[i]), _order_key(config.seed, records[g].id)))
    for g in pending:
        in_pool = [i for i in members[g] if pools[i]]
        allowed = set(SPLITS)
        for i in in_pool:
            allowed &= set(targets[records[i].dataset, pools[i]])
        official = {split_of[i] for i in members[g] if not pools[i]}
        joinable = [s for s in SPLITS if s in allowed and s in official]
        if joinable:
            choice = joinable[0]
        elif official:
            choice = "train"  # its official twin sits in a split this pool cannot use: reported
        else:
            choice = max((s for s in SPLITS if s in allowed),
                         key=lambda s: (_deficit(s, in_pool, records, pools, strata, targets, need, have), -SPLITS.index(s)))
        for i in in_pool:
            split_of[i] = choice
            have[(records[i].dataset, pools[i]), strata[i], choice] += 1
    return split_of, pools


def _deficit(split, in_pool, records, pools, strata, targets, need, have) -> float:
    score = 0.0
    for i in in_pool:
        pool = (records[i].dataset, pools[i])
        want = targets[pool][split] * need[pool, strata[i]]
        score += (want - have[pool, strata[i], split]) / want if want > 0 else -1.0
    return score


def _pool_kind(record: ManifestRecord, config: SplitConfig) -> str:
    return balance.pool_target(record.dataset, record.split, config.official)


def check_official_mapping(records: list[ManifestRecord], config: SplitConfig) -> None:
    unknown: dict[tuple[str, str], str] = {}
    for r in records:
        if r.split is not None and r.split not in config.official.get(r.dataset, {}):
            unknown.setdefault((r.dataset, r.split), r.id)
    if unknown:
        items = ", ".join(f"{d}/{s} (e.g. {i})" for (d, s), i in sorted(unknown.items()))
        raise ValueError(f"original splits missing from params split.official: {items}; "
                         f"map each to one of {OFFICIAL_TARGETS}")


# ------------------------------------------------------------------ dropping duplicates


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


# ------------------------------------------------------------------ the stage


def make_splits(records: list[ManifestRecord], ocr: dict[str, OcrRecord], taxonomy: Taxonomy,
                config: SplitConfig, image_root: Path = Path("."), progress: bool = False) -> SplitResult:
    """Evaluation-only datasets go whole to the diagnostic split; the rest is split as below."""
    diagnostic = [r for r in records if r.dataset in config.diagnostic_datasets]
    result = make_training_splits([r for r in records if r.dataset not in config.diagnostic_datasets], ocr,
                                  taxonomy, config, image_root, progress)
    return add_diagnostic(result, diagnostic, records, ocr, taxonomy)


def make_training_splits(records: list[ManifestRecord], ocr: dict[str, OcrRecord], taxonomy: Taxonomy,
                         config: SplitConfig, image_root: Path = Path("."), progress: bool = False) -> SplitResult:
    check_official_mapping(records, config)
    labels, label_errors = _map_labels(records, taxonomy)
    strata = [stratum(lab) for lab in labels]
    texts = [record_text(r, ocr.get(r.id)) for r in records]
    paths = sorted({r.image_path for r in records if r.image_path})
    by_path = dict(zip(paths, hash_images(paths, image_root, config.workers, progress)))
    hashes = [by_path.get(r.image_path) if r.image_path else None for r in records]
    groups, link_summary = content_groups(records, texts, hashes, config.phash_threshold)
    split_of, pools = assign_splits(records, strata, groups, config)

    protected = [pool is None and split in EVAL_SPLITS for pool, split in zip(pools, split_of)]
    kept = [True] * len(records)
    exact, exact_kept = (exact_duplicates(records, texts, hashes, labels, groups, split_of, protected)
                         if config.drop_exact_duplicates else ({}, {}))
    for i in exact:
        kept[i] = False
    crossing = cross_split_groups(groups, split_of, kept)
    later = [i for i, g in enumerate(groups)
             if kept[i] and g in crossing and split_of[i] != min(crossing[g], key=SPLITS.index)]
    cross_dropped = [i for i in later if not protected[i]] if config.drop_cross_split_duplicates else []
    for i in cross_dropped:
        kept[i] = False
    splits = {records[i].id: split_of[i] for i in sorted(range(len(records)), key=lambda i: records[i].id) if kept[i]}
    duplicates = Duplicates(exact, exact_kept, crossing, cross_dropped, [i for i in later if protected[i]])
    report = _report(records, strata, hashes, groups, link_summary, split_of, pools, kept, duplicates,
                     label_errors, config)
    report["eval_labeled"] = eval_labeled(records, labels, split_of, kept, config.min_eval_labeled, report["warnings"])
    for message in report["warnings"]:
        log.warning(message)
    return SplitResult(splits=splits, report=report)


def add_diagnostic(result: SplitResult, diagnostic: list[ManifestRecord], records: list[ManifestRecord],
                   ocr: dict[str, OcrRecord], taxonomy: Taxonomy) -> SplitResult:
    """Assign the diagnostic records to DIAGNOSTIC_SPLIT and count them apart in the report (the
    training splits' totals, checks and balance never see them). A diagnostic text that is also
    in train/val/test is reported (it would flatter the score), not dropped."""
    if not diagnostic:
        return result
    labels, label_errors = _map_labels(diagnostic, taxonomy)
    counts: dict = defaultdict(Counter)
    for record, label in zip(diagnostic, labels):
        counts[record.dataset][stratum(label)] += 1
    training_text = {}
    for r in records:
        if result.splits.get(r.id) in SPLITS:
            training_text.setdefault(record_text(r, ocr.get(r.id)), r.id)
    shared = [[r.id, training_text[t]] for r in diagnostic if (t := record_text(r, ocr.get(r.id))) in training_text]
    if shared:
        result.report["warnings"].append(f"{len(shared)} diagnostic examples repeat a train/val/test text, "
                                         f"e.g. {shared[0][0]} = {shared[0][1]}")
        log.warning(result.report["warnings"][-1])
    if label_errors:
        log.warning("%d diagnostic records have raw labels the taxonomy does not know, e.g. %s",
                    len(label_errors), label_errors[0])
    splits = {**result.splits, **{r.id: DIAGNOSTIC_SPLIT for r in diagnostic}}
    report = {**result.report, "diagnostic": {
        "note": f"evaluation only: never in {'/'.join(SPLITS)}, balance checks, class weights or model selection",
        "split": DIAGNOSTIC_SPLIT, "examples": len(diagnostic),
        "counts": {d: dict(sorted(c.items())) for d, c in sorted(counts.items())},
        "label_errors": {"count": len(label_errors), "examples": label_errors[:EXAMPLES]},
        "text_in_training_splits": {"count": len(shared), "examples": shared[:EXAMPLES],
                                    "note": "[diagnostic id, train/val/test id] with the same normalised text"}}}
    return SplitResult(splits=dict(sorted(splits.items())), report=report)


def _map_labels(records, taxonomy) -> tuple[list[UnifiedLabels | None], list[str]]:
    """Unified labels per record; a LabelError is recorded (pack counts it as a failure), not fatal."""
    labels, errors = [], []
    for r in records:
        try:
            labels.append(taxonomy.map(r))
        except LabelError as e:
            labels.append(None)
            errors.append(str(e))
    return labels, errors


# ------------------------------------------------------------------ report


def _report(records, strata, hashes, groups, link_summary, split_of, pools, kept, duplicates: Duplicates,
            label_errors, config) -> dict[str, Any]:
    exact, crossing, cross_dropped = duplicates.exact_dropped, duplicates.crossing, duplicates.cross_dropped
    warnings_: list[str] = []
    counts: dict = defaultdict(lambda: defaultdict(Counter))
    for i, r in enumerate(records):
        if kept[i]:
            counts[r.dataset][split_of[i]][strata[i]] += 1
    balance_report = _balance(records, strata, split_of, pools, kept, config, warnings_)
    group_sizes = Counter(groups)
    straddling_pools = _pool_groups_straddling(groups, split_of, pools, kept)
    if label_errors:
        warnings_.append(f"{len(label_errors)} records have raw labels the taxonomy does not know "
                         f"(kept in splits; pack will count them as failures), e.g. {label_errors[0]}")
    statuses = Counter(h.status for h in {r.image_path: hashes[i] for i, r in enumerate(records) if hashes[i]}.values())
    missing = sorted({r.image_path for i, r in enumerate(records) if hashes[i] and hashes[i].status != "ok"})
    if missing:
        warnings_.append(f"{len(missing)} images could not be hashed (missing/undecodable), e.g. {missing[0]}")
    cross_examples = [sorted(records[i].id for i, g2 in enumerate(groups) if g2 == g and kept[i])[:EXAMPLES]
                      for g in sorted(crossing)[:EXAMPLES]]
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "workers"},  # workers never change results
        "totals": {"records": len(records), "assigned": sum(kept), "dropped_exact_duplicates": len(exact),
                   "dropped_cross_split_duplicates": len(cross_dropped),
                   "per_split": dict(sorted(Counter(split_of[i] for i in range(len(records)) if kept[i]).items()))},
        "counts": {d: {s: dict(sorted(c.items())) for s, c in sorted(per.items())} for d, per in sorted(counts.items())},
        "unlabeled": _nested_count(records, strata, split_of, kept, "unlabeled"),
        "images": {"records_with_image": sum(1 for r in records if r.image_path), "unique_images": sum(statuses.values()),
                   "hashed": statuses.get("ok", 0), "missing": statuses.get("missing", 0),
                   "undecodable": statuses.get("undecodable", 0), "not_hashed_examples": missing[:EXAMPLES]},
        "groups": {"multi_member": sum(1 for n in group_sizes.values() if n > 1),
                   "records_in_multi_member": sum(n for n in group_sizes.values() if n > 1),
                   "largest": [{"size": n, "examples": sorted(records[i].id for i, g2 in enumerate(groups) if g2 == g)[:EXAMPLES]}
                               for g, n in sorted(group_sizes.items(), key=lambda x: (-x[1], x[0]))[:EXAMPLES] if n > 1],
                   "links": link_summary},
        "exact_duplicates": {"dropped": len(exact), "by_dataset_split": _pair_count(records, split_of, exact),
                             "examples": [[records[k].id, records[d].id] for d, k in sorted(exact.items())[:EXAMPLES]],
                             "note": "[kept id, dropped id]: same dataset and split, image bytes, text and labels",
                             "kept_in_official_files": _kept_duplicates(records, split_of, duplicates.exact_kept)},
        "cross_split_duplicates": {"groups": len(crossing),
                                   "by_splits": dict(sorted(Counter("|".join(sorted(s, key=SPLITS.index))
                                                                    for s in crossing.values()).items())),
                                   "dropped_from_later_split": len(cross_dropped),
                                   "dropped_examples": sorted(records[i].id for i in cross_dropped)[:EXAMPLES],
                                   "official_kept_in_later_split": {
                                       "count": len(duplicates.official_in_later_split),
                                       "by_dataset_split": _pair_count(records, split_of, duplicates.official_in_later_split),
                                       "examples": sorted(records[i].id for i in duplicates.official_in_later_split)[:EXAMPLES]},
                                   "examples": cross_examples},
        "checks": {
            "ids_unique": _check_ids(records, kept),
            "groups_within_one_created_split": {"ok": not straddling_pools, "violations": len(straddling_pools)},
            "balance": balance_report,
        },
        "evaluation_splits": _evaluation_splits(records, split_of, pools, kept),
        "label_errors": {"count": len(label_errors), "examples": label_errors[:EXAMPLES]},
        "warnings": warnings_,
    }


def _kept_duplicates(records, split_of, kept_duplicates: dict[int, int]) -> dict[str, Any]:
    return {"count": len(kept_duplicates), "by_dataset_split": _pair_count(records, split_of, kept_duplicates),
            "examples": [[records[k].id, records[d].id] for d, k in sorted(kept_duplicates.items())[:EXAMPLES]],
            "note": "[first id, duplicate id] inside one official val/test file: kept, never dropped"}


def _evaluation_splits(records, split_of, pools, kept) -> dict[str, Any]:
    """Per dataset x val/test: official files (examples, kept, dropped as copies of another
    official file) and the carved/created examples beside them."""
    files: dict[tuple[str, str, str], Counter] = defaultdict(lambda: Counter(official_examples=0, kept=0,
                                                                             dropped_as_copies=0))
    others: Counter = Counter()
    for i, r in enumerate(records):
        if split_of[i] not in EVAL_SPLITS:
            continue
        if pools[i] is None:
            counts = files[r.dataset, split_of[i], r.split]
            counts["official_examples"] += 1
            counts["kept" if kept[i] else "dropped_as_copies"] += 1
        elif kept[i]:
            others[r.dataset, split_of[i]] += 1
    return evaluation_splits({cell: dict(c) for cell, c in files.items()}, others, "kept")


def eval_labeled(records, labels, split_of, kept, minimum: int, warnings_: list[str]) -> dict[str, Any]:
    """Labelled examples per dataset, binary field and evaluation split (val, test), for the fields
    a dataset annotates; parts under `minimum` are listed and warned about in one message."""
    counts: dict = defaultdict(lambda: defaultdict(Counter))   # dataset -> field -> split -> labelled
    for i, r in enumerate(records):
        if kept[i] and labels[i] is not None:
            for name in EVAL_FIELDS:
                if getattr(labels[i], name) is not None:
                    counts[r.dataset][name][split_of[i]] += 1
    below = [f"{d}/{s}/{name}: {per_field[name][s]}" for d, per_field in sorted(counts.items())
             for name in EVAL_FIELDS if name in per_field for s in ("val", "test") if per_field[name][s] < minimum]
    if below:
        warnings_.append(f"{len(below)} evaluation parts have fewer than {minimum} labelled examples "
                         f"(split.min_eval_labeled); their per-dataset metrics mean little: " + ", ".join(below))
    return {"min_eval_labeled": minimum, "below": below,
            "counts": {d: {name: {s: per_field[name][s] for s in ("val", "test")} for name in sorted(per_field)}
                       for d, per_field in sorted(counts.items())}}


def _nested_count(records, strata, split_of, kept, wanted) -> dict:
    out: dict = defaultdict(Counter)
    for i, r in enumerate(records):
        if kept[i] and strata[i] == wanted:
            out[r.dataset][split_of[i]] += 1
    return {d: dict(sorted(c.items())) for d, c in sorted(out.items())}


def _pair_count(records, split_of, indices) -> dict:
    return dict(sorted(Counter(f"{records[i].dataset}/{split_of[i]}" for i in indices).items()))


def _check_ids(records, kept) -> dict:
    seen = Counter(r.id for i, r in enumerate(records) if kept[i])
    twice = sorted(i for i, n in seen.items() if n > 1)
    return {"ok": not twice, "violations": len(twice), "examples": twice[:EXAMPLES]}


def _pool_groups_straddling(groups, split_of, pools, kept) -> list[int]:
    """Groups whose created/carved members sit in more than one split (must be none)."""
    spans: dict[int, set[str]] = defaultdict(set)
    for i, g in enumerate(groups):
        if kept[i] and pools[i]:
            spans[g].add(split_of[i])
    return [g for g, s in spans.items() if len(s) > 1]


def _balance(records, strata, split_of, pools, kept, config, warnings_) -> dict[str, Any]:
    """The balance check (stages.balance) on every created/carved pool's assignment."""
    tally: dict = defaultdict(lambda: defaultdict(Counter))   # pool -> split -> stratum -> n
    for i, r in enumerate(records):
        if kept[i] and pools[i]:
            tally[f"{r.dataset}/{pools[i]}"][split_of[i]][strata[i]] += 1
    report, problems = balance.balance_check(tally, config.balance_tolerance, config.balance_min_examples)
    warnings_ += [f"{w}; content groups too large or too few examples to balance" for w in problems]
    return report


def print_summary(result: SplitResult) -> None:
    from rich.console import Console
    from rich.table import Table

    report = result.report
    table = Table(title="Step 3 splits (kept examples; positives = abuse_hate=1, else offensive=1)")
    for column in ("dataset", "split", "examples", "positives", "negatives", "unlabeled"):
        table.add_column(column, justify="left" if column in ("dataset", "split") else "right")
    for dataset, per_split in report["counts"].items():
        for split, classes in per_split.items():
            pos = sum(n for c, n in classes.items() if c.endswith("=1"))
            neg = sum(n for c, n in classes.items() if c.endswith("=0"))
            table.add_row(dataset, split, str(sum(classes.values())), str(pos), str(neg), str(classes.get("unlabeled", 0)))
    console = Console()
    console.print(table)
    checks = report["checks"]
    console.print(f"ids unique: {checks['ids_unique']['ok']}   groups within one created split: "
                  f"{checks['groups_within_one_created_split']['ok']}   "
                  f"duplicate groups: {report['groups']['multi_member']}   cross-split groups: "
                  f"{report['cross_split_duplicates']['groups']}   dropped exact duplicates: "
                  f"{report['totals']['dropped_exact_duplicates']}   kept copies in official val/test files: "
                  f"{report['exact_duplicates']['kept_in_official_files']['count']}   warnings: {len(report['warnings'])}")
    console.print(balance.balance_line(checks["balance"]), soft_wrap=True)
    if report["eval_labeled"]["below"]:
        console.print(f"[bold yellow]evaluation parts under {report['eval_labeled']['min_eval_labeled']} labelled "
                      f"examples: {', '.join(report['eval_labeled']['below'])}[/]")
    if "diagnostic" in report:
        diagnostic = report["diagnostic"]
        console.print(f"{DIAGNOSTIC_SPLIT} (evaluation only, counted apart): {diagnostic['examples']} examples "
                      + ", ".join(f"{d} {dict(c)}" for d, c in diagnostic["counts"].items()))


def main(argv: list[str] | None = None) -> None:
    (config, paths), args = parse("split", __doc__.split("\n\n")[0], PARTS, argv)
    setup_logging(args.verbose)
    for name, path in (("manifest", paths.manifest), ("ocr", paths.ocr), ("label taxonomy", paths.label_taxonomy)):
        if not path.is_file():
            raise SystemExit(f"{name} file not found: {path}")
    try:
        taxonomy = Taxonomy.load(paths.label_taxonomy)
        records = list(read_manifest(paths.manifest))
        ocr = load_ocr_index(paths.ocr)
        log.info("read %d manifest records, %d OCR records", len(records), len(ocr))
        result = make_splits(records, ocr, taxonomy, config, paths.image_root, progress=True)
    except (ContractError, TaxonomyError, ValueError) as e:
        raise SystemExit(f"split: {e}")
    write_json(paths.splits, result.splits)
    write_json(paths.report, result.report)
    print_summary(result)


if __name__ == "__main__":
    main()
