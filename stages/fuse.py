"""Stage fuse: late fusion of the two experts' predictions, fitted on val's fit part only, scored on test.

Per binary label field, a logistic regression on the experts' logits (logit of their P(class 1)):
    fused logit = intercept + w_text * text logit + w_vision * vision logit
fitted on the examples of val's `fit` part that both experts scored. An example only one expert scored
(a text-only dataset such as OLID, HateXplain or the diagnostic suite, or a meme packed without its
image) keeps that expert's probability, counted per dataset and reason. Test labels are never read
for fitting.

Why this fit (see "Late fusion on real memes" in the project notes): an expert's scores on the val
examples it picked its best epoch on flatter it -- the weaker image expert the most, and a fit on
those scores gave it the larger weight and lost to the text expert on test. Hence:
  - fitted on data the experts did not select on: val is cut in two by a fixed hash of the example id
    (`scores.val_part`, about half each, the same in every run and on every machine); the experts
    pick their epoch on the `select` part only (stages/training), fusion fits only on the `fit` part
    and leaves the `select` part out (the report counts both). Its val scores (`val_fit`) are over
    the fit part;
  - cross-fitting: those val scores of the fusion are out-of-fold (K stratified folds, each fold
    scored by a fit on the others), so fusion is judged on val without scoring its own fit; the
    final weights are fitted on all of the fit part;
  - L2 shrinkage (`fuse.C`) toward weight 0, which keeps the weights (the fused probabilities'
    confidence) modest when val is small; it barely changes the ranking: on synthetic experts with
    100-400 val examples, C from 0.01 to 1 moved the fused test AUROC by < 0.004;
  - non-negative weights: an expert whose fitted weight is negative is dropped and the fit redone
    without it, so a near-chance expert never enters with a flipped sign (its weight is 0, the
    other expert alone is recalibrated); if neither keeps a positive weight, the expert with the
    higher AUROC on the fit part alone;
  - class weighting (`fuse.class_weighting`) as the experts' training, so a fused P > 0.5 is a
    decision at the same balance as theirs.
What no fit can see: an image expert whose signal on val (even the part it did not select on)
overstates its test signal; fusion pays once the image expert is really above chance. Halving val
also halves what fusion fits on: on a small val the weights are noisier (the shrinkage above).

The functions up to `fuse` are pure (rows in, rows and plain data out); `main` reads and writes.

    python -m stages.fuse --text-predictions P --vision-predictions P
        [--C 1.0] [--folds 5]
        [--fuse-predictions Step_4/predictions/fusion.jsonl] [--metrics Step_4/metrics/fusion.json]
        [--fuse-report Step_4/reports/fusion.json] [--params params.yaml] [--verbose]
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import contextlib
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from stages.common import atomic_file, json_text, write_json
from stages.config import Part, check_fields, knob, parse
from stages.console import setup_logging, summary
from stages.fusion_report import full_report, headline_metrics
from stages.predictions import (EVALUATED_SPLITS, EXPERTS, FuseError, PredictionRow, binary_fields, contributors,
                                in_split, is_binary_prob, read_predictions)
from stages.scores import main_metric

PROB_FLOOR = 1e-6        # the experts round probabilities to 6 decimals: 0 and 1 occur


@dataclass(frozen=True)
class FieldWeights:
    """The fitted fusion of one field: fused logit = intercept + text * text logit + vision * vision logit."""
    intercept: float
    text: float
    vision: float
    val_examples: int          # val examples (fit part) with both experts and a label for the field
    val_positives: int


@dataclass(frozen=True)
class FusionModel:
    """Plain data (JSON via `to_dict`/`from_dict`): per field its weights, and how they were fitted."""
    fields: dict[str, FieldWeights]
    C: float
    folds: int
    class_weighting: bool
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusionModel":
        return cls(**{**data, "fields": {name: FieldWeights(**w) for name, w in data["fields"].items()}})


@dataclass(frozen=True)
class FuseConfig:
    """The `fuse` params group: how the fusion is fitted."""
    fields: tuple[str, ...] | None = knob(None, "binary fields to fuse; null: every binary field both experts predict")
    C: float = knob(1.0, "inverse L2 strength of the LR (sklearn's C)", min=1e-6)
    folds: int = knob(5, "cross-fitting folds on val (fewer when a class is rarer)", min=2)
    class_weighting: bool = knob(True, "balanced class weights, as the experts' training")
    seed: int = knob(0, "fold assignment")

    def __post_init__(self):
        check_fields(self, "fuse")


@dataclass(frozen=True)
class FusePaths:
    """What fuse reads (the experts' outputs: flags, dvc.yaml's cmd passes them) and writes (the `fuse` group)."""
    text_predictions: Path = knob(help="the text expert's predictions", cli_only=True)
    vision_predictions: Path = knob(help="the image expert's predictions", cli_only=True)
    predictions: Path = knob(help="fused predictions per example (Step 5's first input)", flag="fuse_predictions")
    metrics: Path = knob(help="headline numbers (a DVC metric)")
    report: Path = knob(help="full detail: weights, every metric per split and dataset, counts", flag="fuse_report")


# ---------------------------------------------------------------- fitting

def to_logit(prob: float) -> float:
    p = min(max(float(prob), PROB_FLOOR), 1 - PROB_FLOOR)
    return math.log(p / (1 - p))


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def fusable_fields(text_rows: dict[str, PredictionRow], vision_rows: dict[str, PredictionRow]) -> tuple[str, ...]:
    """Every binary field both experts predict, sorted."""
    return tuple(sorted(binary_fields(text_rows) & binary_fields(vision_rows)))


def gold(text: PredictionRow | None, vision: PredictionRow | None, name: str) -> Any:
    """The field's gold label of an example; both experts read it from the same shard, so they must agree."""
    labels = [row.labels.get(name) for row in (text, vision) if row is not None]
    if len(labels) == 2 and labels[0] != labels[1]:
        raise FuseError(f"example {text.id}: the experts' predictions disagree on the gold {name} "
                        f"({labels[0]!r} vs {labels[1]!r}); were they trained on the same shards?")
    return labels[0]


def paired_data(text_rows: dict[str, PredictionRow], vision_rows: dict[str, PredictionRow],
                name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids sorted, logits [n, 2] text|vision, gold 0/1) of val's fit part: its labeled examples both
    experts scored (the other part, which the experts picked their epoch on, is never read)."""
    ids, logits, labels = [], [], []
    for example_id in sorted(set(text_rows) & set(vision_rows)):
        text, vision = text_rows[example_id], vision_rows[example_id]
        if not in_split(text.split, example_id, "val_fit"):
            continue
        label = gold(text, vision, name)
        if label is None or not all(is_binary_prob(r.probs.get(name)) for r in (text, vision)):
            continue
        ids.append(example_id)
        logits.append((to_logit(text.probs[name]), to_logit(vision.probs[name])))
        labels.append(int(label))
    return ids, np.asarray(logits, dtype=float).reshape(-1, 2), np.asarray(labels, dtype=int)


def fit_nonnegative(logits: np.ndarray, labels: np.ndarray, settings: FuseConfig) -> tuple[float, list[float]]:
    """(intercept, [w_text, w_vision]) of an L2 logistic regression whose negative weights are dropped
    (set to 0) and the rest refitted, until none is negative; when none is left, the better expert."""
    from sklearn.linear_model import LogisticRegression

    active = list(range(logits.shape[1]))
    while active:
        model = LogisticRegression(C=settings.C, class_weight="balanced" if settings.class_weighting else None)
        model.fit(logits[:, active], labels)
        coefs = model.coef_[0]
        if (coefs >= 0).all():
            weights = [0.0] * logits.shape[1]
            for column, coef in zip(active, coefs):
                weights[column] = float(coef)
            return float(model.intercept_[0]), weights
        active = [column for column, coef in zip(active, coefs) if coef >= 0]
    return better_expert_alone(logits, labels)


def better_expert_alone(logits: np.ndarray, labels: np.ndarray) -> tuple[float, list[float]]:
    """Neither logit earns a positive weight on val's fit part: a constant (every meme 0.5) would throw away the
    ranking both experts still give, so the fused score is the expert with the higher AUROC there,
    unchanged (weight 1, intercept 0)."""
    from sklearn.metrics import roc_auc_score

    aurocs = [roc_auc_score(labels, logits[:, column]) for column in range(logits.shape[1])]
    weights = [0.0] * logits.shape[1]
    weights[int(np.argmax(aurocs))] = 1.0
    return 0.0, weights


def check_fittable(name: str, labels: np.ndarray) -> int:
    """The number of folds the field's val fit part allows (each class in every fold); an error below 2."""
    rarest = int(min(labels.sum(), len(labels) - labels.sum())) if len(labels) else 0
    if rarest < 2:
        raise FuseError(f"field {name!r} has {len(labels)} examples in val's fit part both experts scored, "
                        f"{int(labels.sum())} positive: fitting needs at least 2 of each class "
                        "(leave the field out with fuse.fields)")
    return rarest


def fit_field(name: str, logits: np.ndarray, labels: np.ndarray, settings: FuseConfig) -> FieldWeights:
    check_fittable(name, labels)
    intercept, (w_text, w_vision) = fit_nonnegative(logits, labels, settings)
    return FieldWeights(round(intercept, 6), round(w_text, 6), round(w_vision, 6), len(labels), int(labels.sum()))


def fit_fusion(text_val: dict[str, PredictionRow], vision_val: dict[str, PredictionRow], fields: Iterable[str],
               seed: int = 0, settings: FuseConfig | None = None) -> FusionModel:
    """Per field, the weights fitted on val's fit part, the rows both experts scored (others are ignored)."""
    settings = replace(settings or FuseConfig(), seed=seed)
    weights = {}
    for name in fields:
        _, logits, labels = paired_data(text_val, vision_val, name)
        weights[name] = fit_field(name, logits, labels, settings)
    return FusionModel(weights, settings.C, settings.folds, settings.class_weighting, seed)


def out_of_fold(text_val: dict[str, PredictionRow], vision_val: dict[str, PredictionRow], name: str,
                settings: FuseConfig) -> dict[str, float]:
    """Cross-fitting: each example of val's fit part gets its fused P(class 1) from a fit on the other
    folds (stratified, seeded)."""
    from sklearn.model_selection import StratifiedKFold

    ids, logits, labels = paired_data(text_val, vision_val, name)
    folds = StratifiedKFold(n_splits=min(settings.folds, check_fittable(name, labels)), shuffle=True,
                            random_state=settings.seed)
    scores: dict[str, float] = {}
    for fit_rows, score_rows in folds.split(logits, labels):
        intercept, weights = fit_nonnegative(logits[fit_rows], labels[fit_rows], settings)
        for row in score_rows:
            scores[ids[row]] = sigmoid(intercept + float(np.dot(weights, logits[row])))
    return scores


# ---------------------------------------------------------------- applying

def fused_prob(weights: FieldWeights, text: PredictionRow | None, vision: PredictionRow | None, name: str) -> float:
    """Both experts: the fitted fusion; one: that expert's own probability."""
    experts = contributors(text, vision, name)
    if experts == EXPERTS:
        return sigmoid(weights.intercept + weights.text * to_logit(text.probs[name])
                       + weights.vision * to_logit(vision.probs[name]))
    return float((text if experts == ("text",) else vision).probs[name])


def apply_fusion(model: FusionModel, text_rows: dict[str, PredictionRow], vision_rows: dict[str, PredictionRow],
                 overrides: dict[str, dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """One fused row per example either expert scored, sorted by split and id: gold label, fused
    P(class 1) and logit per field, and the experts that contributed. `overrides`: field -> {id:
    probability} used instead of the fitted model (the out-of-fold val scores)."""
    overrides = overrides or {}
    rows = []
    for example_id in sorted(set(text_rows) | set(vision_rows)):
        text, vision = text_rows.get(example_id), vision_rows.get(example_id)
        first = text or vision
        if text is not None and vision is not None and (text.split, text.dataset) != (vision.split, vision.dataset):
            raise FuseError(f"example {example_id}: the experts put it in {text.dataset}/{text.split} and "
                            f"{vision.dataset}/{vision.split}; were they trained on the same shards?")
        probs, labels = {}, {}
        for name, weights in model.fields.items():
            if not contributors(text, vision, name):
                continue
            prob = overrides.get(name, {}).get(example_id)
            probs[name] = round(fused_prob(weights, text, vision, name) if prob is None else prob, 6)
            labels[name] = gold(text, vision, name)
        rows.append({"id": example_id, "dataset": first.dataset, "split": first.split,
                     "experts": [e for e, row in zip(EXPERTS, (text, vision)) if row is not None],
                     "labels": labels, "probs": probs,
                     "logits": {name: round(to_logit(p), 6) for name, p in probs.items()}})
    return sorted(rows, key=lambda row: (row["split"], row["id"]))


def fuse(text_rows: dict[str, PredictionRow], vision_rows: dict[str, PredictionRow],
         settings: FuseConfig) -> tuple[FusionModel, list[dict[str, Any]], dict[str, Any]]:
    """(model fitted on val's fit part, fused rows of every split -- that part's rows out-of-fold --, full report)."""
    fields = settings.fields or fusable_fields(text_rows, vision_rows)
    if not fields:
        raise FuseError("the experts share no binary field to fuse")
    missing = [name for name in fields if name not in fusable_fields(text_rows, vision_rows)]
    if missing:
        raise FuseError(f"fuse.fields: {', '.join(missing)} not predicted as a binary field by both experts "
                        f"(both predict: {', '.join(fusable_fields(text_rows, vision_rows)) or 'none'})")
    model = fit_fusion(text_rows, vision_rows, fields, settings.seed, settings)
    oof = {name: out_of_fold(text_rows, vision_rows, name, settings) for name in fields}
    fused = apply_fusion(model, text_rows, vision_rows, overrides=oof)
    return model, fused, full_report(model, fused, text_rows, vision_rows)


# ---------------------------------------------------------------- the stage

def write_outputs(paths: FusePaths, fused: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """Predictions, report and metrics, each to a temp beside it, renamed once all are complete (metrics last)."""
    with contextlib.ExitStack() as stack:
        metrics = stack.enter_context(atomic_file(paths.metrics))   # entered first: renamed last
        predictions = stack.enter_context(atomic_file(paths.predictions))
        predictions.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in fused), encoding="utf-8")
        report_file = stack.enter_context(atomic_file(paths.report))
        report_file.write_text(json_text(report), encoding="utf-8")
        write_json(metrics, headline_metrics(report))


def print_summary(report: dict[str, Any]) -> None:
    rows = []
    for name, weights in report["model"]["fields"].items():
        for split in EVALUATED_SPLITS:
            scores = report["scores"][name][split]
            sections = [(f"{name} {split}", scores["all"], "auroc")] + [
                (f"  {dataset}", section, main_metric(dataset, name))
                for dataset, section in scores["by_dataset"].items()]
            rows += [(label, metric, *(f"{section[e][metric]:.3f}" if section.get(e) and section[e][metric] is not None
                                       else "-" for e in ("text", "vision", "fused", "fused_all")))
                     for label, section, metric in sections]
        rows.append((f"{name} weights", "", f"{weights['text']:.3f}", f"{weights['vision']:.3f}",
                     f"b={weights['intercept']:.3f}", ""))
    alone = {reason: ", ".join(f"{dataset} {c[reason]}" for dataset, c in report["examples"].items() if c[reason])
             for reason in ("text_alone_no_image", "vision_alone_no_text")}
    fused, parts = sum(c["fused"] for c in report["examples"].values()), report["val_parts"]
    caption = (f"examples fused: {fused}; text alone (no image): {alone['text_alone_no_image'] or 0}; "
               f"vision alone (no text): {alone['vision_alone_no_text'] or 0}; val: fit on "
               f"{parts['fit_on']}, left out {parts['left_out_selected_on']} (the experts picked their epoch on them)")
    summary("fuse: late fusion fitted on val's fit part (val_fit fused: out-of-fold)",
            ("field split / dataset", "metric", "text", "vision", "fused", "fused (all)"), rows, labels=2,
            caption=caption)


def run(settings: FuseConfig, paths: FusePaths) -> dict[str, Any]:
    text_rows, vision_rows = read_predictions(paths.text_predictions), read_predictions(paths.vision_predictions)
    _, fused, report = fuse(text_rows, vision_rows, settings)
    write_outputs(paths, fused, report)
    return report


def main(argv=None) -> None:
    parts = (Part("fuse", FuseConfig), Part("fuse", FusePaths))
    (settings, paths), args = parse("fuse", __doc__.split("\n\n")[0], parts, argv)
    setup_logging(args.verbose)
    report = run(settings, paths)
    print_summary(report)


if __name__ == "__main__":
    from stages import cli
    cli.run("fuse", main)
