"""Step 3 splits: assign every manifest id to train/val/test without content leakage.

    python -m stages.split --manifest FILE --ocr FILE [--label-taxonomy FILE]
                           [--splits OUT] [--report OUT] [--metrics OUT] [--params params.yaml] [--verbose]

1. Official splits are kept (params `releases.official`: dataset -> {original split -> train|val|test|
   carve|create}). `carve` divides that original split into train plus every split the dataset's
   mapping does not provide (`carve_ratio` each); `create` (and a null original split) divides it
   80/10/10 (`ratios`). Both are stratified on the unified label (the taxonomy's `stratify_on`:
   abuse_hate, else offensive) and seeded.
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
3. Checks (Step_3/split_report.json, headline in Step_3/metrics/split.json, + a table): ids unique,
   no group across created/carved splits, per-class share within +-balance_tolerance across
   created/carved splits, counts per dataset x split x class, duplicate groups. A failed balance
   check is a warning, not an error.
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import hashlib
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from stages import balance, console as stage_console
from stages.common import REPO_ROOT, write_json
from stages.config import ConfigError, Part, check_fields, knob, parse, unless_given
from stages.dedupe import (EXAMPLES, Duplicates, content_groups, cross_split_groups, exact_duplicates, hash_images,
                           record_text)
from stages.errors import InputError
from stages.records import (DIAGNOSTIC_SPLIT, SPLITS, ManifestRecord, OcrRecord, image_folders, load_ocr_index,
                            read_manifest)
from stages.split_report import SplitState, build_report, eval_labeled, headline
from stages.taxonomy import LabelError, Taxonomy, UnifiedLabels

log = logging.getLogger(__name__)

OFFICIAL_TARGETS = SPLITS + ("carve", "create")


@dataclass(frozen=True)
class SplitConfig:
    """The tunables of the `split` params group (and `releases.official`, shared with pack)."""
    official: dict[str, dict[str, str]] = knob(help="dataset -> original split -> train|val|test|carve|create",
                                               group="releases")
    ratios: dict[str, float] = knob(factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1},
                                    help="for datasets (or parts) without an official split")
    carve_ratio: float = knob(0.1, "`carve`: share of the original split moved into each split the dataset lacks")
    seed: int = knob(0, "seeds the stratified assignment")
    phash_threshold: int = knob(4, "max Hamming distance of 64-bit perceptual hashes for \"same image\"")
    drop_exact_duplicates: bool = knob(
        True, "same dataset+split, image bytes, text and labels: keep one (official files stay whole)")
    drop_cross_split_duplicates: bool = knob(
        False, "drop carved/created val/test examples whose content is in an earlier split")
    balance_tolerance: float = knob(balance.DEFAULT_TOLERANCE, "per-class share may differ by at most this across "
                                    "created splits", **balance.TOLERANCE_LIMITS)
    balance_min_examples: int = knob(balance.DEFAULT_MIN_EXAMPLES, "a created/carved split part smaller than this is "
                                     "reported, not judged", min=0)
    min_eval_labeled: int = knob(30, "warn when a dataset's val/test part has fewer labelled examples for a field",
                                 min=0)
    diagnostic_datasets: tuple[str, ...] = knob(("hatecheck",), "evaluation only: all to the diagnostic split")
    workers: int = knob(0, "image hashing processes; 0 = all cores", min=0)

    def __post_init__(self):
        check_fields(self, "split")
        bad = {f"{d}.{s}": t for d, m in self.official.items() for s, t in m.items() if t not in OFFICIAL_TARGETS}
        if bad:
            raise ValueError(f"releases.official: targets must be one of {OFFICIAL_TARGETS}, got {bad}")
        if set(self.ratios) != set(SPLITS) or not all(0 <= r <= 1 for r in self.ratios.values()) \
                or not math.isclose(sum(self.ratios.values()), 1.0, abs_tol=1e-6):
            raise ValueError(f"split.ratios needs train/val/test shares in [0, 1] summing to 1, got {self.ratios}")
        if not 0 <= self.carve_ratio < 0.5:
            raise ValueError(f"split.carve_ratio must be in [0, 0.5), got {self.carve_ratio}")
        if not 0 <= self.phash_threshold < 32:
            raise ValueError(f"split.phash_threshold must be in [0, 32), got {self.phash_threshold}")
        if isinstance(self.diagnostic_datasets, str) or not all(isinstance(d, str) for d in self.diagnostic_datasets):
            raise ValueError("split.diagnostic_datasets must be a list of dataset names, "
                             f"got {self.diagnostic_datasets!r}")


@dataclass(frozen=True)
class SplitPaths:
    """The files the stage reads (Step 2's come as flags: dvc.yaml's cmd) and writes."""
    manifest: Path = knob(help="the Step 2 manifest", cli_only=True)
    ocr: Path = knob(help="the Step 2 OCR file", cli_only=True)
    label_taxonomy: Path = knob(help="the label taxonomy JSON")
    splits: Path = knob(help="output: id -> train|val|test")
    report: Path = knob(help="output: every check, count and example")
    metrics: Path | None = knob(None, "output: the headline counts and checks (the DVC metric); null: none")
    image_root: Path = knob(REPO_ROOT, "root relative image paths resolve against (as pack)", cli_only=True)
    image_dirs: tuple[Path, ...] | None = knob(None, "images are hashed only from under these, as pack reads them",
                                               group="releases")



PARTS = (Part("split", SplitConfig), Part("split", SplitPaths))


@dataclass(frozen=True)
class SplitResult:
    splits: dict[str, str]           # id -> train|val|test (sorted by id)
    report: dict[str, Any]



# ------------------------------------------------------------------ assignment


def stratum(labels: UnifiedLabels | None, stratify_on: tuple[str, ...]) -> str:
    """The class a record is stratified and balance-checked on (balance.stratum)."""
    if labels is None:
        return balance.stratum(None, None, stratify_on)
    return balance.stratum(labels.labeled, labels.fields, stratify_on)


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
                         key=lambda s: (_deficit(s, in_pool, records, pools, strata, targets, need, have),
                                        -SPLITS.index(s)))
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
        raise ConfigError(f"original splits missing from params releases.official: {items}; "
                          f"map each to one of {OFFICIAL_TARGETS}")



# ------------------------------------------------------------------ the stage


class SplitInputError(InputError):
    """A missing input file: the stage stops with this message."""


def split(config: SplitConfig, paths: SplitPaths, progress: bool = False) -> SplitResult:
    """Read the manifest, OCR and taxonomy, make the splits and write splits.json and the report."""
    for name, path in (("manifest", paths.manifest), ("ocr", paths.ocr), ("label taxonomy", paths.label_taxonomy)):
        if not path.is_file():
            raise SplitInputError(f"{name} file not found: {path}")
    taxonomy = Taxonomy.load(paths.label_taxonomy)
    records = list(read_manifest(paths.manifest))
    ocr = load_ocr_index(paths.ocr)
    log.info("read %d manifest records, %d OCR records", len(records), len(ocr))
    result = make_splits(records, ocr, taxonomy, config, paths.image_root, progress=progress,
                         image_dirs=image_folders(paths.image_dirs, paths.image_root))
    inputs = (paths.manifest, paths.ocr, paths.label_taxonomy)
    write_json(paths.splits, result.splits, inputs)
    write_json(paths.report, result.report, inputs)
    if paths.metrics is not None:
        write_json(paths.metrics, headline(result.report), inputs)
    return result


def make_splits(records: list[ManifestRecord], ocr: dict[str, OcrRecord], taxonomy: Taxonomy,
                config: SplitConfig, image_root: Path = Path("."), progress: bool = False,
                image_dirs: list[Path] | None = None) -> SplitResult:
    """Evaluation-only datasets go whole to the diagnostic split; the rest is split as below. Images
    are hashed only from under `image_dirs` (None: anywhere)."""
    diagnostic = [r for r in records if r.dataset in config.diagnostic_datasets]
    result = make_training_splits([r for r in records if r.dataset not in config.diagnostic_datasets], ocr,
                                  taxonomy, config, image_root, progress, image_dirs)
    return add_diagnostic(result, diagnostic, records, ocr, taxonomy)


def make_training_splits(records: list[ManifestRecord], ocr: dict[str, OcrRecord], taxonomy: Taxonomy,
                         config: SplitConfig, image_root: Path = Path("."), progress: bool = False,
                         image_dirs: list[Path] | None = None) -> SplitResult:
    check_official_mapping(records, config)
    labels, label_errors = _map_labels(records, taxonomy)
    strata = [stratum(lab, taxonomy.stratify_on) for lab in labels]
    texts = [record_text(r, ocr.get(r.id)) for r in records]
    paths = sorted({r.image_path for r in records if r.image_path})
    by_path = dict(zip(paths, hash_images(paths, image_root, config.workers, progress, image_dirs)))
    hashes = [by_path.get(r.image_path) if r.image_path else None for r in records]
    groups, links = content_groups(records, texts, hashes, config.phash_threshold)
    split_of, pools = assign_splits(records, strata, groups, config)
    state = SplitState(records, labels, label_errors, strata, texts, hashes, groups, links, split_of, pools)
    state.duplicates = drop_duplicates(state, config)
    splits = {records[i].id: split_of[i] for i in sorted(range(len(records)), key=lambda i: records[i].id)
              if state.kept[i]}
    report = {"stratify_on": list(taxonomy.stratify_on), **build_report(state, config)}
    report["eval_labeled"] = eval_labeled(state, taxonomy.fields_of_type("binary"), config.min_eval_labeled,
                                          report["warnings"])
    for message in report["warnings"]:
        log.warning(message)
    return SplitResult(splits=splits, report=report)


def drop_duplicates(state: SplitState, config: SplitConfig) -> Duplicates:
    """Mark exact copies (drop_exact_duplicates) and carved/created members of groups that also sit
    in an earlier split (drop_cross_split_duplicates) as not kept; official evaluation files stay whole."""
    protected = state.protected
    exact, exact_kept = (exact_duplicates(state.records, state.texts, state.hashes, state.labels, state.groups,
                                          state.split_of, protected)
                         if config.drop_exact_duplicates else ({}, {}))
    for i in exact:
        state.kept[i] = False
    crossing = cross_split_groups(state.groups, state.split_of, state.kept)
    later = [i for i, g in enumerate(state.groups)
             if state.kept[i] and g in crossing and state.split_of[i] != min(crossing[g], key=SPLITS.index)]
    cross_dropped = [i for i in later if not protected[i]] if config.drop_cross_split_duplicates else []
    for i in cross_dropped:
        state.kept[i] = False
    return Duplicates(exact, exact_kept, crossing, cross_dropped, [i for i in later if protected[i]])


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
        counts[record.dataset][stratum(label, taxonomy.stratify_on)] += 1
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



# ------------------------------------------------------------------ command line


def print_summary(result: SplitResult) -> None:
    report = result.report
    rows = []
    for dataset, per_split in report["counts"].items():
        for split, classes in per_split.items():
            pos = sum(n for c, n in classes.items() if c.endswith("=1"))
            neg = sum(n for c, n in classes.items() if c.endswith("=0"))
            rows.append((dataset, split, sum(classes.values()), pos, neg, classes.get("unlabeled", 0)))
    console = Console()
    positives = ", else ".join(f"{field}=1" for field in report["stratify_on"])
    stage_console.summary(f"Step 3 splits (kept examples; positives = {positives})",
                          ("dataset", "split", "examples", "positives", "negatives", "unlabeled"), rows, labels=2,
                          console=console)
    checks = report["checks"]
    console.print(f"ids unique: {checks['ids_unique']['ok']}   groups within one created split: "
                  f"{checks['groups_within_one_created_split']['ok']}   "
                  f"duplicate groups: {report['groups']['multi_member']}   cross-split groups: "
                  f"{report['cross_split_duplicates']['groups']}   dropped exact duplicates: "
                  f"{report['totals']['dropped_exact_duplicates']}   kept copies in official val/test files: "
                  f"{report['exact_duplicates']['kept_in_official_files']['count']}   "
                  f"warnings: {len(report['warnings'])}")
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
    paths = unless_given(paths, args, "split", "report", "metrics")
    stage_console.setup_logging(args.verbose)
    result = split(config, paths, progress=True)
    print_summary(result)


if __name__ == "__main__":
    from stages import cli
    cli.run("split", main)
