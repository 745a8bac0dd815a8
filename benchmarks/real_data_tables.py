"""The real_data benchmark's scores and tables: the baselines fitted on a run's packed data (TF-IDF +
logistic regression, chance, logistic regression on the frozen ImageNet backbone's pooled image
features), the late fusion of each seed's text and image expert (stages/fuse.py, fitted on val's fit part),
the experts' metrics averaged over seeds, paired bootstrap intervals of the differences that
matter, and the HateCheck table beside the paper's. benchmarks/real_data.py
runs the stages and calls these; they read only a run's shards, metrics and predictions files."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from rich.console import Console
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from stages import diagnostic as diagnostic_report
from stages.console import summary
from stages.predictions import read_predictions
from stages.scores import main_metric, predicted_class
from stages.shards import iter_examples
from stages.training import classification_metrics
from stages.training.data import majority_class

RESULT_COLUMNS = ("dataset", "field", "system", "seeds", "f1_macro", "auroc", "accuracy", "sd", "support")
CHANCE = "chance: guess at the train rate"
BOOTSTRAP_RESAMPLES = 1000
# Published test numbers (0-1 scale) on the same official test files; sources in the README, "Real data".
PUBLISHED = {
    ("hateful_memes", "abuse_hate"): [("Text BERT (Kiela et al. 2020), dev_seen",
                                       {"auroc": 0.6465, "accuracy": 0.5826})],
    ("olid", "offensive"): [("SVM (Zampieri et al. 2019)", {"f1_macro": 0.69}),
                            ("CNN (Zampieri et al. 2019)", {"f1_macro": 0.80}),
                            ("BERT (NULI, 1st of OffensEval 2019)", {"f1_macro": 0.829})],
}

HATECHECK_PAPER = Path(__file__).with_name("hatecheck_paper.json")   # the paper's BERT models, per functionality
GOLD_ROWS = {"abuse_hate": ("all hateful cases", "accuracy_abuse_hate", "hateful"),
             "not_abuse_hate": ("all non-hateful cases", "accuracy_not_abuse_hate", "non_hateful"),
             "": ("all cases", "accuracy", "overall")}


# ---------------------------------------------------------------- baselines: TF-IDF + logistic regression, chance

def field_label(meta: dict, field: str):
    """A unified field's label (meta.labels) or a dataset's aux label (meta.aux, e.g. Memotion's motivational)."""
    return meta["labels"][field] if field in meta["labels"] else meta.get("aux", {}).get(field)


def read_split(shards: Path, split: str) -> list:
    return list(iter_examples(shards, split, with_images=False))


def tfidf_baseline(shards: Path, fields: list[str]) -> dict:
    """Per binary field: fitted on every train example labelled for it; the metrics file's layout
    (test.<field>.by_dataset.<dataset>) so the tables read it like an expert's; plus `diagnostic`
    and its test `predictions` (field -> id -> (dataset, label, P(1)), the experts' file read the same)."""
    train, test, diagnostic = (read_split(shards, s) for s in ("train", "test", "diagnostic"))
    out: dict = {"test": {}, "predictions": {}}
    for field in fields:
        rows = [ex for ex in train if field_label(ex.meta, field) is not None]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        model = LogisticRegression(max_iter=2000, class_weight="balanced")
        model.fit(vectorizer.fit_transform([ex.text for ex in rows]), [field_label(ex.meta, field) for ex in rows])
        by_dataset, predictions = {}, {}
        for name in sorted({ex.meta["dataset"] for ex in test}):
            mine = [ex for ex in test if ex.meta["dataset"] == name and field_label(ex.meta, field) is not None]
            if mine:
                probs = model.predict_proba(vectorizer.transform([ex.text for ex in mine]))[:, 1]
                labels = [field_label(ex.meta, field) for ex in mine]
                majority = majority_class(train_counts(rows, field, name))
                by_dataset[name] = classification_metrics(labels, probs, majority)
                predictions.update({ex.id: (name, label, float(prob)) for ex, label, prob in zip(mine, labels, probs)})
        out["test"][field], out["predictions"][field] = {"by_dataset": by_dataset}, predictions
        cases = [ex for ex in diagnostic if field_label(ex.meta, field) is not None]
        if field == "abuse_hate" and cases:
            probs = model.predict_proba(vectorizer.transform([ex.text for ex in cases]))[:, 1]
            out["diagnostic"] = diagnostic_report.report(
                [ex.id for ex in cases], [field_label(ex.meta, field) for ex in cases], predicted_class(probs),
                diagnostic_report.read_cases(shards), ("not_abuse_hate", "abuse_hate"))
    return out


def chance_baseline(shards: Path, fields: list[str]) -> dict:
    """Guessing class 1 at the dataset's train rate, blind to the text: its expected macro-F1 and
    AUROC 0.5 per test set, in the metrics file's layout. What a score means on a set nothing learns."""
    train, test = read_split(shards, "train"), read_split(shards, "test")
    out: dict = {"test": {}}
    for field in fields:
        rows = [ex for ex in train if field_label(ex.meta, field) is not None]
        by_dataset = {}
        for name in sorted({ex.meta["dataset"] for ex in test}):
            labels = [field_label(ex.meta, field) for ex in test
                      if ex.meta["dataset"] == name and field_label(ex.meta, field) is not None]
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
    mine = [field_label(ex.meta, field) for ex in rows if ex.meta["dataset"] == dataset] or \
        [field_label(ex.meta, field) for ex in rows]
    return len(mine) - sum(mine), sum(mine)


# ---------------------------------------------------------------- image baseline: LR on frozen pooled features

def frozen_backbone(vision: dict):
    """The image expert's ImageNet backbone (params' vision.model/weights), headless, in eval mode, and
    timm's eval transform at the expert's input size (squash, no centre crop, as the stage)."""
    from timm.data import create_transform

    from stages.train_vision import VisionConfig, build_timm_model
    from stages.training import TrainConfig

    cfg = VisionConfig(model=vision["model"], weights=vision["weights"], image_size=vision.get("image_size"))
    model, _, _ = build_timm_model(cfg, TrainConfig(tasks=("abuse_hate",)).tasks)
    data_config = dict(model.config.pretrained_cfg)
    transform = create_transform(**{k: data_config[k] for k in ("input_size", "interpolation", "mean", "std",
                                                                 "crop_pct", "crop_mode")}, is_training=False)
    return model.timm_model.eval(), transform


def pooled_features(shards: Path, split: str, vision: dict, cache: Path) -> tuple[list, np.ndarray]:
    """(the split's examples with an image, their pooled features), computed once into `cache` (.npz)."""
    import torch

    examples = [ex for ex in iter_examples(shards, split, with_images=True) if ex.image is not None]
    if cache.is_file():
        stored = np.load(cache)
        if list(stored["ids"]) == [ex.id for ex in examples]:
            return examples, stored["features"]
    model, transform = frozen_backbone(vision)
    features = []
    with torch.inference_mode():
        for start in range(0, len(examples), 64):
            batch = torch.stack([transform(ex.image.convert("RGB")) for ex in examples[start:start + 64]])
            features.append(model.forward_head(model.forward_features(batch), pre_logits=True).numpy())
    features = np.concatenate(features) if features else np.zeros((0, 0))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=np.array([ex.id for ex in examples]), features=features)
    return examples, features


BACKBONE_KEYS = ("model", "weights", "image_size")   # what decides the pooled features (params' vision group)


def backbone_name(vision: dict) -> str:
    """The image baseline's frozen backbone, as the results header names it."""
    return ", ".join(f"{key} {vision.get(key)}" for key in BACKBONE_KEYS)


def feature_cache(cache_dir: Path, vision: dict) -> Path:
    """The folder of one backbone's cached features: another model, weights or input size never
    reuses them (their example ids alone would match)."""
    key = json.dumps({k: vision.get(k) for k in BACKBONE_KEYS}, sort_keys=True)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(vision["model"]))
    return cache_dir / f"{name}-{zlib.crc32(key.encode()):08x}"


def image_baseline(shards: Path, fields: list[str], vision: dict, cache_dir: Path) -> dict:
    """Per binary field: logistic regression (balanced) on the train images' frozen pooled features
    (cached per backbone under `cache_dir`), scored per test dataset; the layout of tfidf_baseline."""
    cache = feature_cache(cache_dir, vision)
    train, train_x = pooled_features(shards, "train", vision, cache / "train.npz")
    test, test_x = pooled_features(shards, "test", vision, cache / "test.npz")
    out: dict = {"test": {}, "predictions": {}}
    for field in fields:
        rows = [i for i, ex in enumerate(train) if field_label(ex.meta, field) is not None]
        if len({field_label(train[i].meta, field) for i in rows}) < 2:
            continue
        model = LogisticRegression(max_iter=3000, class_weight="balanced")
        model.fit(train_x[rows], [field_label(train[i].meta, field) for i in rows])
        by_dataset, predictions = {}, {}
        for name in sorted({ex.meta["dataset"] for ex in test}):
            mine = [i for i, ex in enumerate(test) if ex.meta["dataset"] == name
                    and field_label(ex.meta, field) is not None]
            if mine:
                probs = model.predict_proba(test_x[mine])[:, 1]
                labels = [field_label(test[i].meta, field) for i in mine]
                majority = majority_class(train_counts([train[i] for i in rows], field, name))
                by_dataset[name] = classification_metrics(labels, probs, majority)
                predictions.update({test[i].id: (name, label, float(p)) for i, label, p in zip(mine, labels, probs)})
        out["test"][field], out["predictions"][field] = {"by_dataset": by_dataset}, predictions
    return out


# ---------------------------------------------------------------- late fusion (stages/fuse.py), per seed

def fusion_runs(text_files: list[Path], image_files: list[Path], fields: list[str]) -> tuple[list[dict], list[dict]]:
    """Per seed (text and image expert runs paired in order): fit on val's fit part, apply to test; each seed's
    metrics (tfidf_baseline's layout; a dataset with one modality scores that expert alone) and its
    test predictions (field -> id -> (dataset, label, P(1)))."""
    from stages import fuse

    systems, predictions = [], []
    for seed, (text_file, image_file) in enumerate(zip(text_files, image_files)):
        text, image = fuse.read_predictions(text_file), fuse.read_predictions(image_file)
        names = [f for f in fields if f in fuse.fusable_fields(text, image)]
        model = fuse.fit_fusion({k: r for k, r in text.items() if r.split == "val"},
                                {k: r for k, r in image.items() if r.split == "val"}, names, seed)
        rows = [r for r in fuse.apply_fusion(model, text, image) if r["split"] == "test"]
        metrics: dict = {"test": {}, "weights": model.to_dict()}
        seed_predictions: dict = {}
        for field in names:
            scored = [(r["dataset"], r["id"], r["labels"][field], r["probs"][field]) for r in rows
                      if r["labels"].get(field) is not None]
            by_dataset = {}
            for name in sorted({d for d, _, _, _ in scored}):
                mine = [(i, label, p) for d, i, label, p in scored if d == name]
                labels, probs = [label for _, label, _ in mine], [p for _, _, p in mine]
                by_dataset[name] = classification_metrics(labels, probs, majority=0)
                by_dataset[name].pop("majority_baseline_f1_macro")   # the experts' rows carry it
            metrics["test"][field] = {"by_dataset": by_dataset}
            seed_predictions[field] = {i: (d, label, float(p)) for d, i, label, p in scored}
        systems.append(metrics)
        predictions.append(seed_predictions)
    return systems, predictions


# ---------------------------------------------------------------- results

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
    """field -> id -> (dataset, gold label, P(class 1)) for an expert's labelled test rows."""
    out: dict[str, dict] = {field: {} for field in fields}
    for row in read_predictions(path).values():
        for field in fields:
            if row.split == "test" and row.labels.get(field) is not None:
                out[field][row.id] = (row.dataset, int(row.labels[field]), float(row.probs[field]))
    return out


def resampled_f1_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """binary_f1_macro (predicted_class's rule, zero_division 0) from the confusion counts: the
    bootstrap scores each system 1000 times per comparison, and sklearn's input checks dominate."""
    predicted, positive = probs > 0.5, labels == 1
    tp, fp, fn = np.sum(predicted & positive), np.sum(predicted & ~positive), np.sum(~predicted & positive)
    tn = len(labels) - tp - fp - fn

    def f1(hits: int, false_alarms: int, misses: int) -> float:
        return 2 * hits / (2 * hits + false_alarms + misses) if hits + false_alarms + misses else 0.0
    return (f1(tp, fp, fn) + f1(tn, fn, fp)) / 2


def resampled_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """roc_auc_score as the Mann-Whitney U statistic of the ranks (ties averaged), for the bootstrap."""
    from scipy.stats import rankdata

    positive = labels == 1
    n_pos = int(positive.sum())
    return float((rankdata(probs)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(labels) - n_pos)))


SCORES = {"f1_macro": resampled_f1_macro, "auroc": resampled_auroc}


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
        for dataset in datasets_of(predictions, field):
            for a, b in pairs:
                row = paired_row(predictions, a, b, field, dataset, main_metric(dataset, field), resamples)
                rows += [row] if row else []
    return rows


def datasets_of(predictions: dict[str, list[dict]], field: str) -> list[str]:
    return sorted({d for runs in predictions.values() for run in runs for d, _, _ in run.get(field, {}).values()})


def paired_row(predictions: dict[str, list[dict]], a: str, b: str, field: str, dataset: str, metric: str,
               resamples: int = BOOTSTRAP_RESAMPLES, label: str | None = None) -> dict | None:
    """a - b on `metric` over the dataset's test examples both scored (every seed), with its 95% paired
    bootstrap interval; None when they share no example (or AUROC lacks a class)."""
    runs = [run.get(field, {}) for name in (a, b) for run in predictions.get(name, [])]
    ids = sorted(set.intersection(*(set(i for i, v in run.items() if v[0] == dataset) for run in runs))) \
        if runs and predictions.get(a) and predictions.get(b) else []
    if not ids:
        return None
    labels = np.array([runs[0][i][1] for i in ids])
    if metric == "auroc" and len(np.unique(labels)) < 2:
        return None
    probs = [np.array([run[i][2] for i in ids]) for run in runs]
    rng = np.random.default_rng(zlib.crc32(f"{dataset} {field} {a} {b}".encode()))
    diff, low, high = paired_difference(labels, probs[:len(predictions[a])], probs[len(predictions[a]):],
                                        metric, resamples, rng)
    return {"dataset": dataset, "field": field, "metric": metric, "comparison": label or f"{a} - {b}",
            "difference": diff, "95% CI low": low, "95% CI high": high, "examples": len(ids)}


def seed_mean_score(predictions: list[dict], field: str, dataset: str, metric: str) -> float:
    runs = [{i: v for i, v in run.get(field, {}).items() if v[0] == dataset} for run in predictions]
    return float(np.mean([SCORES[metric](np.array([v[1] for v in run.values()]), np.array([v[2] for v in run.values()]))
                          for run in runs if run]))


def modality_rows(predictions: dict[str, list[dict]], fields: list[str], datasets: list[str], text: str | None,
                  image: str, resamples: int = BOOTSTRAP_RESAMPLES) -> list[dict]:
    """On the datasets with images, AUROC and macro-F1: image expert - chance (AUROC 0.5: a constant
    score), image expert - image baseline, and fusion - the better expert (the one with the higher
    seed-mean test score; the other expert's gap follows from the tables). Without a text expert
    (text None, or no runs of it) the fusion row is left out, the image rows are not."""
    rows = []
    for field in fields:
        images = predictions.get(image, [])
        constant = [{field: {i: (d, label, 0.5) for i, (d, label, _) in run.get(field, {}).items()}} for run in images]
        scored = {**predictions, "chance": constant[:1]}
        for dataset in [d for d in datasets_of({image: images}, field) if d in datasets]:
            for metric in ("auroc", "f1_macro"):
                pairs = [(image, "chance", None)] if metric == "auroc" else []
                pairs += [(image, "image baseline", None)]
                if predictions.get(text) and images:
                    better = max((text, image), key=lambda name: seed_mean_score(predictions[name], field, dataset,
                                                                                 metric))
                    pairs.append(("fusion", better, f"fusion - better expert ({better})"))
                for a, b, label in pairs:
                    row = paired_row(scored, a, b, field, dataset, metric, resamples, label)
                    rows += [row] if row else []
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
