"""Stage `ingest`: native dataset releases -> Step_2/data_manifest.jsonl + Step_2/ocr.jsonl.

Datasets are read in the order of the registry (releases.SPECS), each in its adapter's (file)
order, so the same releases give byte-identical files. Image files need not exist yet. Rows an adapter
cannot use, and ids seen twice, are counted skips with reasons, kept with their full `file:line`
in Step_2/ingest_report.json (at most SKIP_ROWS_KEPT per dataset and reason) and printed file:line
first; Step_2/metrics/ingest.json (the DVC metric) holds the headline counts. A release that cannot
be read at all is an error naming the file and line.

Users with Step 2 files of their own set `ingest.step2_manifest` / `ingest.step2_ocr`: they are
validated with the one Step 2 validator (records.read_manifest / read_ocr) and copied with image
paths made repo-relative.

    python -m stages.ingest                                   # datasets from params.yaml
    python -m stages.ingest --dataset olid=Datasets/olid --manifest m.jsonl --ocr o.jsonl
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import argparse
import dataclasses
import json
import logging
import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from rich.console import Console

from stages import records
from stages.common import REPO_ROOT, atomic_file, json_text
from stages.config import ConfigError, Part, given, knob, parse, unless_given
from stages.console import Progress, setup_logging, summary
from stages.records import ContractError, ManifestRecord, OcrRecord
from stages import releases
from stages.releases import Example, ReleaseError, Skip

log = logging.getLogger(__name__)
NO_SPLIT = "(none)"  # how counts show records whose split is None
SKIP_EXAMPLES = 3      # skipped rows printed per dataset and reason (all are in the report file)
SKIP_ROWS_KEPT = 1000  # skipped rows kept in the report per dataset and reason (the counts are exact)


class IngestError(ConfigError):
    """A configuration problem (unknown dataset, missing folder or file): the stage stops with this message."""


@dataclass(frozen=True)
class IngestConfig:
    """The `ingest` params group."""
    manifest: Path = knob(help="output Step 2 manifest")
    ocr: Path = knob(help="output Step 2 OCR file")
    report: Path | None = knob(None, "output report: counts and every skipped row (file:line); null: beside the "
                                       "manifest")
    metrics: Path | None = knob(None, "output headline counts (a DVC metric: a few numbers per dataset); null: none")
    datasets: dict[str, Path] = knob(factory=dict, help="the releases: name -> folder (on the command line: "
                                     "--dataset NAME=DIR)", flag=False)
    step2_manifest: Path | None = knob(None, "your own Step 2 manifest, validated and copied instead of the releases")
    step2_ocr: Path | None = knob(None, "your own Step 2 OCR file (give both or neither)")


@dataclass
class IngestResult:
    manifest_path: Path
    ocr_path: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> split -> examples
    labeled: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> split -> with labels
    ocr_counts: dict[str, int] = field(default_factory=dict)  # dataset -> OCR records
    skips: dict[str, int] = field(default_factory=dict)  # "<dataset>: <reason>" -> count
    skip_rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # same key -> {where, detail}

    @property
    def examples(self) -> int:
        return sum(n for splits in self.counts.values() for n in splits.values())

    @property
    def skipped(self) -> int:
        return sum(self.skips.values())


# ---------------------------------------------------------------- native releases


def ingest(datasets: dict[str, Path], manifest_out: Path, ocr_out: Path, root: Path,
           progress: bool = False, report_out: Path | None = None, metrics_out: Path | None = None) -> IngestResult:
    """Read every release with its adapter and write both Step 2 files and the report (atomically, together)."""
    unknown = sorted(set(datasets) - set(releases.SPECS))
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; valid names: {', '.join(releases.SPECS)}")
    result = IngestResult(Path(manifest_out), Path(ocr_out))
    ordered = [(name, Path(datasets[name])) for name in releases.SPECS if name in datasets]
    inputs = [folder for _, folder in ordered]
    for folder in inputs:
        refuse_symlinked_folder(folder, root)
    with ExitStack() as stack:
        manifest_tmp = stack.enter_context(atomic_file(manifest_out, inputs))
        ocr_tmp = stack.enter_context(atomic_file(ocr_out, inputs))
        with open(manifest_tmp, "w", encoding="utf-8", newline="\n") as manifest_f, \
                open(ocr_tmp, "w", encoding="utf-8", newline="\n") as ocr_f:
            items = _all_items(ordered, progress)
            for name, item in _unique(items):
                if isinstance(item, Skip):
                    _count_skip(result, name, item)
                    continue
                manifest, ocr = _normalised(item.manifest, root), item.ocr and _normalised(item.ocr, root)
                manifest_f.write(records.jsonl_line(manifest))
                if ocr:
                    ocr_f.write(records.jsonl_line(ocr))
                _count_example(result, manifest, ocr is not None)
        _check_nonempty(result, ordered)
        _write_report(stack, result, report_out, metrics_out, inputs)
    return result


def refuse_symlinked_folder(folder: Path, root: Path) -> None:
    """A release folder reached through a symlinked folder under `root` (the repo): DVC hashes such a
    link as itself, not what it points to, so a changed release would never rerun ingest."""
    path, root = Path(os.path.abspath(folder)), Path(os.path.abspath(root))
    for part in reversed([path, *path.parents]):
        if part != root and part.is_relative_to(root) and part.is_symlink():
            raise ReleaseError(folder, None, f"{part} is a symlink to {os.path.realpath(part)}: DVC would not see "
                               "changes behind it; move or copy the release folder itself here (symlinked files "
                               "inside it are fine: DVC hashes their targets)")


def _check_nonempty(result: IngestResult, ordered: list[tuple[str, Path]]) -> None:
    """A dataset of which no row could be used is an error, not a quiet '0 records'."""
    for name, folder in ordered:
        if not result.counts.get(name):
            skips = {key.split(": ", 1)[1]: n for key, n in result.skips.items() if key.startswith(f"{name}: ")}
            why = ", ".join(f"{reason} {n}" for reason, n in skips.items()) or "the release holds no rows"
            first = next((rows[0]["where"] for key, rows in result.skip_rows.items()
                          if key.startswith(f"{name}: ")), "")
            raise ReleaseError(folder, None,
                               f"{name}: no usable records ({why})" + (f", first at {first}" if first else ""))


def _write_report(stack: ExitStack, result: IngestResult, report_out: Path | None, metrics_out: Path | None,
                  inputs: list[Path]) -> None:
    for path, content in ((report_out, report), (metrics_out, headline)):
        if path is not None:
            stack.enter_context(atomic_file(path, inputs)).write_text(json_text(content(result)), encoding="utf-8")


def _all_items(ordered: list[tuple[str, Path]], progress: bool) -> Iterator[tuple[str, Example | Skip]]:
    for name, folder in ordered:
        if not folder.is_dir():
            raise ReleaseError(folder, None, f"dataset folder for {name!r} does not exist")
        with Progress(name, None, unit="records", enabled=progress) as bar:
            for item in releases.SPECS[name].read(folder):
                yield name, item
                bar.advance()


def _unique(items: Iterable[tuple[str, Example | Skip]]) -> Iterator[tuple[str, Example | Skip]]:
    """Pass items through, turning a second example with an already used id into a counted Skip."""
    first_at: dict[str, str] = {}
    for name, item in items:
        if isinstance(item, Example):
            if item.manifest.dataset != name:
                raise ReleaseError(item.where, None, f"adapter {name!r} produced a record of dataset "
                                   f"{item.manifest.dataset!r}")
            record_id = item.manifest.id
            if record_id in first_at:
                file, _, line = item.where.rpartition(":")
                file, line = (file, int(line)) if line.isdigit() else (item.where, 0)
                item = Skip(file, line, "duplicate id",
                            f"{record_id} (first at {first_at[record_id]}; this one is skipped)")
            else:
                first_at[record_id] = item.where or record_id
        yield name, item


def _normalised(record: ManifestRecord | OcrRecord, root: Path):
    if record.image_path is None:
        return record
    return dataclasses.replace(record, image_path=repo_path(record.image_path, root))


def repo_path(path: str | Path, root: Path) -> str:
    """Relative to `root` when under it (without resolving symlinks first), else records' rule."""
    p = Path(os.path.abspath(path))  # lexical: removes "..", keeps symlinked folders under root
    try:
        return p.relative_to(Path(root).absolute()).as_posix()
    except ValueError:
        return records.relative_image_path(p, root)


def _count_example(result: IngestResult, record: ManifestRecord, has_ocr: bool) -> None:
    split = record.split or NO_SPLIT
    per_split = result.counts.setdefault(record.dataset, {})
    per_split[split] = per_split.get(split, 0) + 1
    labeled = result.labeled.setdefault(record.dataset, {})
    labeled[split] = labeled.get(split, 0) + (record.labels_raw is not None)
    result.ocr_counts[record.dataset] = result.ocr_counts.get(record.dataset, 0) + has_ocr


def _count_skip(result: IngestResult, name: str, skip: Skip) -> None:
    key = f"{name}: {skip.reason}"
    result.skips[key] = result.skips.get(key, 0) + 1
    rows = result.skip_rows.setdefault(key, [])
    file = repo_path(skip.file, REPO_ROOT)
    where = f"{file}:{skip.line}" if skip.line else file
    if len(rows) < SKIP_ROWS_KEPT:
        rows.append({"where": where, "detail": skip.detail})
    log.info("skipped %s (%s) %s", where, skip.reason, skip.detail)


def report(result: IngestResult) -> dict:
    """The ingest report (Step_2/ingest_report.json): counts per dataset, skips per dataset and
    reason, and the skipped rows with their full file:line (strings: `dvc metrics` shows only numbers)."""
    datasets = {}
    for name in sorted(set(result.counts) | {key.split(": ", 1)[0] for key in result.skips}):
        datasets[name] = {"examples": result.counts.get(name, {}), "labeled": result.labeled.get(name, {}),
                          "ocr_records": result.ocr_counts.get(name, 0),
                          "skipped": {key.split(": ", 1)[1]: n for key, n in sorted(result.skips.items())
                                      if key.split(": ", 1)[0] == name}}
    rows = [{"dataset": key.split(": ", 1)[0], "reason": key.split(": ", 1)[1], **row}
            for key in sorted(result.skip_rows) for row in result.skip_rows[key]]
    return {"examples": result.examples, "skipped": result.skipped, "datasets": datasets,
            "skipped_rows": rows, "skipped_rows_kept_per_reason": SKIP_ROWS_KEPT}


def headline(result: IngestResult) -> dict:
    """The few numbers `dvc metrics show` / `dvc exp show` compare (Step_2/metrics/ingest.json):
    examples and skipped rows, in all and per dataset."""
    names = sorted(set(result.counts) | {key.split(": ", 1)[0] for key in result.skips})
    skipped = {name: sum(n for key, n in result.skips.items() if key.split(": ", 1)[0] == name) for name in names}
    return {"examples": result.examples, "skipped": result.skipped,
            "datasets": {name: {"examples": sum(result.counts.get(name, {}).values()), "skipped": skipped[name]}
                         for name in names}}


# ---------------------------------------------------------------- user-supplied Step 2 files


def import_step2(manifest_in: Path, ocr_in: Path, manifest_out: Path, ocr_out: Path, root: Path,
                 report_out: Path | None = None, metrics_out: Path | None = None) -> IngestResult:
    """Validate a user's own Step 2 files and copy them with repo-relative image paths.

    Any contract break is an error (file, line, field); every OCR record must belong to a
    manifest record of the same dataset and split.
    """
    result = IngestResult(Path(manifest_out), Path(ocr_out))
    known: dict[str, ManifestRecord] = {}
    inputs = [manifest_in, ocr_in]
    with ExitStack() as stack:
        manifest_tmp = stack.enter_context(atomic_file(manifest_out, inputs))
        ocr_tmp = stack.enter_context(atomic_file(ocr_out, inputs))
        with open(manifest_tmp, "w", encoding="utf-8", newline="\n") as f:
            for record in records.read_manifest(manifest_in):
                record = _normalised(record, root)
                f.write(records.jsonl_line(record))
                known[record.id] = record
                _count_example(result, record, False)
        with open(ocr_tmp, "w", encoding="utf-8", newline="\n") as f:
            for line, record in enumerate(records.read_ocr(ocr_in), start=1):
                owner = known.get(record.id)
                if owner is None or (owner.dataset, owner.split) != (record.dataset, record.split):
                    problem = "not in the manifest" if owner is None else (
                        f"dataset/split {record.dataset}/{record.split} differ from the manifest's "
                        f"{owner.dataset}/{owner.split}")
                    raise ContractError(ocr_in, _line_of(ocr_in, record.id), "id", f"{record.id!r}: {problem}")
                f.write(records.jsonl_line(_normalised(record, root)))
                result.ocr_counts[record.dataset] = result.ocr_counts.get(record.dataset, 0) + 1
        _write_report(stack, result, report_out, metrics_out, inputs)
    return result


def _line_of(path: Path, record_id: str) -> int:
    """The line holding `record_id` (only used to word an error message)."""
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            try:
                if json.loads(text).get("id") == record_id:
                    return number
            except (json.JSONDecodeError, AttributeError):
                continue
    return 0


# ---------------------------------------------------------------- CLI


def print_summary(result: IngestResult) -> None:
    console = Console()
    rows = [(dataset if i == 0 else "", split, n, result.labeled[dataset][split],
             result.ocr_counts.get(dataset, 0) if i == 0 else "")
            for dataset, splits in result.counts.items() for i, (split, n) in enumerate(splits.items())]
    caption = (f"{NO_SPLIT}: no original split (e.g. HateXplain posts in no division); the split stage assigns one"
               if any(NO_SPLIT in splits for splits in result.counts.values()) else None)
    summary(f"Step 2: {result.examples} examples -> {result.manifest_path}, {result.ocr_path}",
            ("dataset", "split", "examples", "labeled", "OCR records"), rows, labels=2, caption=caption,
            console=console)
    if result.skips:
        print_skips(result, console)


def print_skips(result: IngestResult, console) -> None:
    """Counts per dataset and reason, then a few rows each, file:line first and never cut (a long
    line wraps in the terminal instead of being truncated by rich)."""
    console.print(f"{result.skipped} skipped rows (listed with file:line in the ingest report):")
    for key, n in result.skips.items():
        console.print(f"  {key}: {n}", soft_wrap=True, markup=False, highlight=False)
        for row in result.skip_rows[key][:SKIP_EXAMPLES]:
            detail = f"  {row['detail']}" if row["detail"] else ""
            console.print(f"    {row['where']}{detail}", soft_wrap=True, markup=False, highlight=False)


def parse_dataset_options(options: list[str]) -> dict[str, Path]:
    datasets: dict[str, Path] = {}
    for option in options:
        name, sep, folder = option.partition("=")
        if not sep or not name or not folder:
            raise ConfigError(f"--dataset expects NAME=DIR, got {option!r}")
        if name in datasets:
            raise ConfigError(f"--dataset {name} given twice")
        datasets[name] = Path(folder)
    return datasets


def check_datasets(datasets: dict[str, Path]) -> None:
    unknown = sorted(set(datasets) - set(releases.SPECS))
    if unknown:
        raise IngestError(f"unknown dataset name(s) {unknown}; valid names: {', '.join(releases.SPECS)}")
    for name, folder in datasets.items():
        if not folder.is_dir():
            raise IngestError(f"dataset folder for {name!r} does not exist: {folder}")


def add_dataset_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=DIR",
                        help=f"a release folder (repeatable; replaces ingest.datasets and ingest.step2_*); "
                             f"names: {', '.join(releases.SPECS)} (default: params ingest.datasets)")


def command_line_config(config: IngestConfig, args: argparse.Namespace) -> IngestConfig:
    """`--dataset` flags replace the params' releases (and their own Step 2 files); an explicit
    `--manifest` without `--report` writes the report beside it, keeping the pipeline's report."""
    if args.dataset:
        if given(args, "ingest.step2_manifest") or given(args, "ingest.step2_ocr"):
            raise ConfigError("--dataset and --step2-manifest/--step2-ocr exclude each other")
        config = dataclasses.replace(config, datasets=parse_dataset_options(args.dataset),
                                     step2_manifest=None, step2_ocr=None)
    config = unless_given(config, args, "ingest", "manifest", "report")
    return unless_given(config, args, "ingest", "manifest", "metrics")


def main(argv: list[str] | None = None) -> IngestResult:
    (config,), args = parse("ingest", __doc__.split("\n\n")[0], [Part("ingest", IngestConfig)], argv,
                            extra=add_dataset_flag)
    setup_logging(args.verbose)
    result = run(command_line_config(config, args), progress=True)
    print_summary(result)
    return result


def run(config: IngestConfig, progress: bool = False) -> IngestResult:
    """The stage: the configured releases (or the user's own Step 2 files) -> Step 2 files and report."""
    step2_manifest, step2_ocr = config.step2_manifest, config.step2_ocr
    report = config.report or config.manifest.parent / "ingest_report.json"
    if step2_manifest or step2_ocr:
        if not (step2_manifest and step2_ocr):
            raise IngestError("give both Step 2 files (step2_manifest and step2_ocr), or neither")
        for path in (step2_manifest, step2_ocr):
            if not path.is_file():
                raise IngestError(f"Step 2 file not found: {path}")
        return import_step2(step2_manifest, step2_ocr, config.manifest, config.ocr, REPO_ROOT, report, config.metrics)
    if not config.datasets:
        raise IngestError("no datasets: give --dataset NAME=DIR or set ingest.datasets in params.yaml")
    check_datasets(config.datasets)
    return ingest(config.datasets, config.manifest, config.ocr, REPO_ROOT, progress=progress, report_out=report,
                  metrics_out=config.metrics)


if __name__ == "__main__":
    from stages import cli
    cli.run("ingest", main)
