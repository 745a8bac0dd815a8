"""What a trained expert leaves: predictions of whole splits, the diagnostic report, DVCLive's test
plots, the metrics record, the files (written atomically) and the summary printed at the end."""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader

from stages import diagnostic, heads
from stages.common import atomic_dir, atomic_file, write_json
from stages.console import summary
from stages.records import DIAGNOSTIC_SPLIT, SPLITS
from stages.training.config import Expert, ExpertPaths, Tasks, TrainConfig, label_names
from stages.training.data import ExpertData, ModelCollator, ShardStream, SplitInfo
from stages.training.metrics import ECE_BINS, Predictions, head_rows, predicted_class, rounded, split_metrics

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def predict(model: PreTrainedModel, stream: ShardStream, collate: Callable, batch_size: int,
            num_workers: int = 0, layout: heads.HeadLayout | None = None) -> Predictions:
    """One pass over a whole split (stream must be distributed=False) with ids kept; with a head
    layout the labels are target vectors and probs every head's probabilities."""
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers,
                        collate_fn=ModelCollator(collate, with_meta=True))
    device = next(model.parameters()).device
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and torch.cuda.is_bf16_supported()
                else contextlib.nullcontext())
    ids, datasets, labels, probs = [], [], [], []
    model.eval()
    with torch.no_grad(), autocast:
        for batch, metas in loader:
            labels.append(batch.pop("labels").numpy())
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            probs.append((layout.probabilities(logits) if layout else torch.softmax(logits.float(), dim=-1)[:, 1])
                         .cpu().numpy())
            ids += [meta["id"] for meta in metas]
            datasets += [meta["dataset"] for meta in metas]
    return Predictions(stream.split.name, ids, datasets, np.concatenate(labels), np.concatenate(probs))


def prediction_rows(preds: Iterable[Predictions], tasks: Tasks) -> list[dict[str, Any]]:
    """One row per example, sorted by split and id, the same shape for every expert: per field learned,
    its gold label (null when not annotated) and probabilities (a binary field's P(class 1), a
    categorical head's distribution, a multi-label head's P(label) per label; order: config.json)."""
    def single(label, probs) -> dict[str, Any]:
        return {"labels": {tasks.single: int(label)}, "probs": {tasks.single: rounded(probs)}}

    def multi(labels, probs) -> dict[str, Any]:
        return {"labels": tasks.layout.decode_labels(labels), "probs": head_probabilities(tasks.layout, probs)}

    targets = single if tasks.layout is None else multi
    rows = [{"id": i, "dataset": d, "split": p.split, **targets(y, q)}
            for p in preds for i, d, y, q in zip(p.ids, p.datasets, p.labels, p.probs)]
    return sorted(rows, key=lambda row: (row["split"], row["id"]))


def head_probabilities(layout: heads.HeadLayout, probs: np.ndarray) -> dict[str, Any]:
    out = {}
    for head, part in zip(layout.heads, layout.logit_slices().values()):
        values = [rounded(p) for p in probs[part]]
        out[head.name] = values[1] if head.kind == "binary" else values
    return out


def final_pass(model, expert: Expert, data: ExpertData, paths: ExpertPaths, train: TrainConfig,
               live) -> tuple[list[Predictions], dict[str, Any] | None]:
    """The chosen model's predictions of val and test (+ the diagnostic split), each read whole in
    shard order by this process alone; the test plots and the diagnostic section of the metrics."""
    infos = [data.splits["val"], data.splits["test"]] + ([data.diagnostic] if data.diagnostic else [])
    preds = [predict(model, eval_stream(info, expert, train), expert.collate, train.batch_size, train.num_workers,
                     train.tasks.layout) for info in infos]
    log_test_plots(live, primary_view(preds[1], train.tasks.layout, train.tasks.primary))
    diagnostic_pred = preds[2] if data.diagnostic else None
    return preds, diagnostic_report(diagnostic_pred, data.diagnostic_skipped, paths, train.tasks, live)


def eval_stream(info: SplitInfo, expert: Expert, train: TrainConfig) -> ShardStream:
    return ShardStream(info, train.tasks, expert.fields_wanted, expert.decode_eval, train.batch_size,
                       distributed=False)


def metrics_record(expert: Expert, cfg: TrainConfig, splits: dict[str, SplitInfo], selection: SplitInfo, weights,
                   epochs: tuple[int, int | None], preds: list[Predictions],
                   report: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics file: model, task(s), epochs (and the val examples the best was picked on), example
    counts, then per split (and head) its metrics."""
    layout = cfg.tasks.layout
    head = ({"task": cfg.tasks.single} if layout is None else
            {"tasks": list(cfg.tasks.names), "head_weights": dict(cfg.tasks.head_weights),
             "target_group_level": cfg.target_group_level,
             "head_examples": {name: {head: info.head_counts.labeled(head) for head in layout.names}
                               for name, info in splits.items()}})
    return {
        "model": expert.model_id, "pretrained": expert.pretrained, **head,
        "epochs": cfg.epochs, "epochs_run": epochs[0], "best_epoch": epochs[1],
        "epoch_selection": {"part": selection.part, "val_examples": selection.labeled},
        "examples": {name: info.labeled for name, info in splits.items()},
        "skipped_null_labels": {name: info.skipped_null for name, info in splits.items()},
        "class_weights": weights, "ece_bins": ECE_BINS,
        **{p.split: split_metrics(p, splits["train"], layout) for p in preds if p.split in SPLITS},
        **({DIAGNOSTIC_SPLIT: report} if report else {})}


HEADLINE_SCORES = ("f1_macro", "f1_micro", "auroc", "accuracy", "ece", "majority_baseline_f1_macro",
                   "majority_baseline_f1_micro", "support")


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few numbers `dvc metrics show` / `dvc exp show` compare (Step_4/metrics/<expert>.json):
    epochs, val/test scores, test's main metric per dataset (multi-head: the primary head's scores
    and every other head's main metric), the diagnostic accuracy. The full record (per dataset,
    head, functionality, target group) is the report."""
    def main_metric(values: dict[str, Any]) -> float | None:
        return values["f1_micro" if "f1_micro" in values else "f1_macro"]

    def scores(values: dict[str, Any], per_dataset: bool) -> dict[str, Any]:
        out = {key: values[key] for key in HEADLINE_SCORES if key in values}
        if per_dataset:
            out["by_dataset"] = {name: main_metric(d) for name, d in values.get("by_dataset", {}).items()}
        return out

    out = {"epochs_run": metrics["epochs_run"], "best_epoch": metrics["best_epoch"]}
    for split in (s for s in SPLITS if s in metrics):
        section = metrics[split]
        if "tasks" in metrics:
            out[split] = {head: scores(values, False) if head == metrics["tasks"][0] else main_metric(values)
                          for head, values in section.items()}
        else:
            out[split] = scores(section, split == "test")
    diagnostic_section = metrics.get(DIAGNOSTIC_SPLIT, {})
    if "accuracy" in diagnostic_section:
        out[DIAGNOSTIC_SPLIT] = {"accuracy": diagnostic_section["accuracy"], "cases": diagnostic_section["cases"]}
    return out


def primary_view(pred: Predictions, layout: heads.HeadLayout | None, name: str) -> Predictions | None:
    """A multi-head prediction reduced to one binary head's labeled rows (gold 0/1, P(class 1)) --
    the shape of a single-task one; None when that head is not binary or has no labeled row."""
    if layout is None:
        return pred
    if name not in layout.names or layout.head(name).kind != "binary":
        return None
    rows, gold, probs = head_rows(layout, name, pred.labels, pred.probs)
    if not rows.any():
        return None
    return Predictions(pred.split, [i for i, keep in zip(pred.ids, rows) if keep],
                       [d for d, keep in zip(pred.datasets, rows) if keep], gold, probs)


def diagnostic_report(pred: Predictions | None, skipped: str | None, paths: ExpertPaths, tasks: Tasks,
                      live) -> dict[str, Any] | None:
    """The diagnostic split's section of the metrics from the chosen model's predictions of it, and
    the per-functionality bar plot; None when there is no diagnostic split."""
    if pred is None:
        return {"skipped": skipped} if skipped else None
    task = tasks.single or "abuse_hate"   # the suites test hate detection
    scored = primary_view(pred, tasks.layout, task)
    if scored is None:
        return {"skipped": f"no {task} head with labeled {DIAGNOSTIC_SPLIT} examples"}
    section = diagnostic.report(scored.ids, scored.labels, predicted_class(scored.probs),
                                diagnostic.read_cases(paths.shards), label_names(task))
    live.log_plot(diagnostic.PLOT_NAME, diagnostic.plot_rows(section), x="accuracy", y="functionality",
                  template="bar_horizontal", title=f"Diagnostic accuracy per functionality ({task})")
    return section


def log_test_plots(live, test: Predictions | None) -> None:
    """Confusion matrix, ROC and calibration curves of the test split (DVCLive sklearn plots);
    multi-head: of the primary head when it is binary (test=None: no plots)."""
    if test is None:
        return
    live.log_sklearn_plot("confusion_matrix", test.labels.tolist(), predicted_class(test.probs).tolist(),
                          name="test/confusion_matrix")
    live.log_sklearn_plot("calibration", test.labels.tolist(), test.probs.tolist(), name="test/calibration",
                          n_bins=ECE_BINS)
    if len(np.unique(test.labels)) == 2:
        live.log_sklearn_plot("roc", test.labels.tolist(), test.probs.tolist(), name="test/roc")


def write_outputs(expert: Expert, metrics: dict, rows: list[dict], live_work: Path, paths: ExpertPaths) -> None:
    """Model folder, headline metrics, full report, predictions and live dir: each written to a temp
    beside it, renamed only once all are complete, the metrics file last."""
    with contextlib.ExitStack() as stack:
        inputs = (paths.shards,)
        metrics_file = stack.enter_context(atomic_file(paths.metrics, inputs))   # entered first: renamed last
        if paths.report is not None:
            write_json(stack.enter_context(atomic_file(paths.report, inputs)), metrics)
        model_dir = stack.enter_context(atomic_dir(paths.out_model, expert.stage, inputs))
        save_model(expert, model_dir)
        live_dir = stack.enter_context(atomic_dir(paths.live_dir, expert.stage, inputs))
        shutil.copytree(live_work, live_dir, dirs_exist_ok=True)
        predictions = stack.enter_context(atomic_file(paths.predictions, inputs))
        predictions.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")
        write_json(metrics_file, headline(metrics))


# from_pretrained's download options, which transformers records in tokenizer_config.json: how this
# machine fetched the files (HF_HUB_OFFLINE=1 turns on local_files_only), not what the tokenizer does
DOWNLOAD_KWARGS = ("local_files_only", "cache_dir", "force_download", "proxies", "token", "revision", "_commit_hash")


def save_model(expert: Expert, folder: Path) -> None:
    """The model and its processor, the same bytes whatever the environment variables."""
    if type(expert.processor).__name__ == "TimmWrapperImageProcessor":
        plain_batch_norms(expert.model)
        expert.model.save_pretrained(folder)
        return   # a timm wrapper keeps its data config in config.json
    expert.model.save_pretrained(folder)
    init_kwargs = getattr(expert.processor, "init_kwargs", None)
    if isinstance(init_kwargs, dict):
        for key in DOWNLOAD_KWARGS:
            init_kwargs.pop(key, None)
    expert.processor.save_pretrained(folder)


def plain_batch_norms(model) -> None:
    """timm's frozen batch norms (vision.trainable_groups) back to plain ones with the same values, so
    the saved state dict has the architecture's own keys and reloads without missing entries."""
    frozen = [name for name, module in model.timm_model.named_modules() if "Frozen" in type(module).__name__]
    if frozen:
        import timm

        timm.utils.unfreeze(model.timm_model, frozen)


def print_summary(metrics: dict[str, Any], title: str) -> None:
    """One row per split (multi-head: per split and head), each followed by one per dataset."""
    epochs = (f"best epoch {metrics['best_epoch']}/{metrics['epochs_run']} picked on "
              f"{metrics['epoch_selection']['val_examples']}/{metrics['examples']['val']} val")
    if "tasks" in metrics:
        heading = f"tasks={','.join(metrics['tasks'])}  {epochs}"
        columns, labels = ("split / head / dataset", "metric", "model", "baseline", "support"), 2
        cells = head_cells
        sections = [(f"[bold]{split}[/] {head}", values) for split in ("val", "test")
                    for head, values in metrics[split].items()]
    else:
        heading = f"task={metrics['task']}  {epochs}  pretrained={metrics['pretrained']}"
        columns, labels = ("split / dataset", *(c.replace("majority_baseline_f1_macro", "baseline F1")
                                                for c in SINGLE_TASK_COLUMNS)), 1
        cells = single_task_cells
        sections = [(f"[bold]{split}[/]", metrics[split]) for split in ("val", "test")]
    rows = []
    for label, values in sections:
        rows.append((label, *cells(values)))
        rows.extend((f"  {name}", *cells(per_dataset)) for name, per_dataset in values["by_dataset"].items())
    console = Console()
    summary(f"{title}: {metrics['model']}  {heading}", columns, rows, labels=labels, console=console)
    if DIAGNOSTIC_SPLIT in metrics:
        console.print(diagnostic.summary_line(metrics[DIAGNOSTIC_SPLIT]))


SINGLE_TASK_COLUMNS = ("accuracy", "f1_macro", "majority_baseline_f1_macro", "auroc", "ece", "support")


def single_task_cells(values: dict) -> list[str]:
    return ["-" if values[c] is None else f"{values[c]:.3f}" if isinstance(values[c], float) else str(values[c])
            for c in SINGLE_TASK_COLUMNS]


def head_cells(values: dict) -> list[str]:
    """A head's main metric (micro-F1 for a multi-label head, else macro-F1) beside its majority baseline."""
    main = "f1_macro" if "f1_micro" not in values else "f1_micro"
    return [main, f"{values[main]:.3f}", f"{values['majority_baseline_' + main]:.3f}", str(values["support"])]
