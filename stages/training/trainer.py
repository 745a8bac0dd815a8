"""Training: `train_expert` runs the Hugging Face Trainer with one explicit DVCLiveCallback, val
macro-F1 chooses the best epoch, weighted cross-entropy when `class_weighting`. Several
`train.tasks` (or one non-binary field): one head per field on the shared backbone
(stages/heads.py), a masked per-head loss weighted by train.tasks, and the first field's val
macro-F1 picks the epoch. Final val/test metrics and predictions come from one
single-process pass over the complete splits on rank 0 with the best model, which then also scores
the evaluation-only diagnostic split when there is one (stages/diagnostic.py; never trained on).
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate.data_loader import IterableDatasetShard
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import DVCLiveCallback

from stages import heads
from stages.common import OUTPUT_MARKER, check_owned, output_errors
from stages.console import Progress
from stages.training import outputs
from stages.training.config import Expert, ExpertPaths, TrainConfig
from stages.training.data import ExpertData, ModelCollator, ShardStream, SplitInfo, class_weights
from stages.training.metrics import HeadEpochMetrics, epoch_metrics

log = logging.getLogger(__name__)

TIMING_SUFFIXES = ("runtime", "_per_second")   # Trainer log keys that measure wall-clock time


class ExpertTrainer(Trainer):
    """Trainer with weighted cross-entropy (or a multi-head loss) and ShardStream's own rank split left alone."""

    def __init__(self, *args, class_weights: list[float] | None = None,
                 head_loss: heads.MultiHeadLoss | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)
        self.head_loss = head_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"].float()
        if self.head_loss is not None:
            loss = self.head_loss(logits, labels)
            return (loss, outputs) if return_outputs else loss
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
        return (loss, outputs) if return_outputs else loss

    def get_train_dataloader(self):
        return own_rank_split(super().get_train_dataloader())

    def get_eval_dataloader(self, eval_dataset=None):
        return own_rank_split(super().get_eval_dataloader(eval_dataset))


def own_rank_split(loader):
    """With several processes accelerate wraps an IterableDataset in IterableDatasetShard, which
    would split ShardStream's already-split stream again: make the wrapper a pass-through (the
    same trick Trainer plays on its BatchRebalanceSampler) and keep every gathered eval prediction."""
    wrapper = getattr(loader, "dataset", None)
    if isinstance(wrapper, IterableDatasetShard) and isinstance(wrapper.dataset, ShardStream):
        wrapper.num_processes, wrapper.process_index, wrapper.batch_size = 1, 0, 1
        wrapper.total_dataset_length = 0   # gather_for_metrics: no remainder to cut
    return loader


class ProgressCallback(TrainerCallback):
    """Training progress in examples/s with ETA on the main process (replaces Trainer's tqdm);
    plain lines every ~10 s when the output is not a terminal (stages/console.py)."""

    def __init__(self, examples_per_step: int):
        self.examples_per_step = examples_per_step
        self.progress = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = Progress("train epoch 1", state.max_steps * self.examples_per_step,
                                     completed=state.global_step * self.examples_per_step).__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step * self.examples_per_step,
                                 label=f"train epoch {math.ceil(state.epoch or 0)}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.progress is not None and metrics:
            loss = next((e["loss"] for e in reversed(state.log_history) if "loss" in e), float("nan"))
            self.progress.note(
                f"epoch {state.epoch:.0f}: train loss {loss:.4f}  val loss {metrics.get('eval_loss', float('nan')):.4f}"
                f"  val macro-F1 {metrics.get('eval_f1_macro', float('nan')):.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None


class ReproducibleDVCLive(DVCLiveCallback):
    """DVCLive logging without the wall-clock figures (runtime, samples/s): the live dir is a DVC
    output, and it must be byte-identical across runs like the metrics (speed is printed instead)."""

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        logs = {key: value for key, value in (logs or {}).items() if not key.endswith(TIMING_SUFFIXES)}
        super().on_log(args, state, control, model=model, logs=logs, **kwargs)


def training_arguments(cfg: TrainConfig, expert: Expert, output_dir: Path) -> TrainingArguments:
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        learning_rate=expert.learning_rate, weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="f1_macro", greater_is_better=True,
        save_total_limit=1, seed=cfg.seed, data_seed=cfg.seed, full_determinism=not cuda,
        bf16=bf16, fp16=cuda and not bf16, use_cpu=not cuda,  # use_cpu: torchrun on CPU -> DDP over gloo
        report_to="none", disable_tqdm=True,
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=cfg.num_workers,
        accelerator_config={"dispatch_batches": False},  # every rank reads its own share
        log_level="passive", log_level_replica="passive")   # quiet_libraries decides


def epoch_summary(state) -> tuple[int, int | None]:
    """(epochs run, best epoch by val macro-F1) from the Trainer's log history."""
    evals = [entry for entry in state.log_history if "eval_f1_macro" in entry]
    epochs_run = int(round(max((entry.get("epoch", 0) for entry in state.log_history), default=0)))
    best = max(evals, key=lambda entry: entry["eval_f1_macro"], default=None)  # first of equals
    return epochs_run, (int(round(best["epoch"])) if best else None)


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def train_expert(expert: Expert, data: ExpertData, paths: ExpertPaths, train: TrainConfig,
                 resume: bool = False) -> dict[str, Any] | None:
    """Train, pick the best epoch on val macro-F1 (of the first of train.tasks), then (main process)
    write model, metrics, predictions and live dir atomically. Returns the metrics on the main
    process, else None."""
    from dvclive import Live

    tasks, splits = train.tasks, data.splits
    run_dir = paths.run_dir(expert.stage)
    live_work = run_dir / "live"
    args = training_arguments(train, expert, run_dir / "checkpoints")   # also sets up torch.distributed
    main = args.process_index == 0
    resume_from = fresh_scratch(run_dir, expert.stage, args, resume)
    weights = train_class_weights(splits["train"], tasks.layout) if train.class_weighting else None
    if tasks.layout:
        setattr(expert.model.config, heads.CONFIG_KEY, tasks.layout.to_config())   # saved in config.json
        if resume_from is None:
            heads.init_label_priors(expert.model, tasks.layout, splits["train"].head_counts, weights)
    with contextlib.ExitStack() as stack:
        live = stack.enter_context(Live(str(live_work), dvcyaml=False, save_dvc_exp=False,
                                        resume=resume_from is not None)) if main else None
        trainer = expert_trainer(expert, splits["train"], data.selection, paths, train, args, live, weights)
        trainer.train(resume_from_checkpoint=resume_from)
        if main:
            preds, report = outputs.final_pass(trainer.model, expert, data, paths, train, live)
    metrics = None
    if main:
        metrics = outputs.metrics_record(expert, train, splits, data.selection, weights, epoch_summary(trainer.state),
                                         preds, report)
        outputs.write_outputs(expert, metrics, outputs.prediction_rows(preds, tasks), live_work, paths)
    trainer.accelerator.wait_for_everyone()
    if main:
        shutil.rmtree(run_dir, ignore_errors=True)   # done: checkpoints are no longer needed
    return metrics


def fresh_scratch(run_dir: Path, stage: str, args: TrainingArguments, resume: bool) -> str | None:
    """The checkpoint to resume from (--resume and there is one); otherwise the stage's run folder
    inside the scratch folder is made anew (only when it is absent, empty or the stage's own)."""
    checkpoints, main = run_dir / "checkpoints", args.process_index == 0
    with args.main_process_first(desc="scratch"):
        resume_from = last_checkpoint(checkpoints) if resume else None
        if main and resume_from is None:
            check_owned(run_dir, stage)
            shutil.rmtree(run_dir, ignore_errors=True)
            with output_errors(run_dir):
                run_dir.mkdir(parents=True)
                (run_dir / OUTPUT_MARKER).write_text(f"{stage}\n", encoding="utf-8")
    if resume and resume_from is None and main:
        log.warning("--resume: no checkpoint in %s, training from the start", checkpoints)
    return resume_from


def expert_trainer(expert: Expert, train: SplitInfo, selection: SplitInfo, paths: ExpertPaths, cfg: TrainConfig,
                   args: TrainingArguments, live, weights) -> ExpertTrainer:
    """The Trainer over the train stream and val's select part (the best epoch is picked on it, so fuse
    can fit on the other part); progress and DVCLive callbacks on the main process."""
    tasks, layout, bs = cfg.tasks, cfg.tasks.layout, cfg.batch_size
    train_stream = ShardStream(train, tasks, expert.fields_wanted, expert.decode_train, bs,
                               shuffle_seed=cfg.seed, bucket_by_length=expert.bucket_by_length,
                               trace_dir=paths.trace_ids)
    selection_stream = ShardStream(selection, tasks, expert.fields_wanted, expert.decode_eval, bs)
    main = args.process_index == 0
    callbacks = [ReproducibleDVCLive(live=live), ProgressCallback(bs * args.world_size)] if main else []
    trainer = ExpertTrainer(model=expert.model, args=args, train_dataset=train_stream,
                            eval_dataset=selection_stream, data_collator=ModelCollator(expert.collate),
                            compute_metrics=HeadEpochMetrics(layout, tasks.primary) if layout else epoch_metrics,
                            callbacks=callbacks, class_weights=None if layout else weights,
                            head_loss=heads.MultiHeadLoss(layout, weights, tasks.head_weights) if layout else None)
    trainer.remove_callback(PrinterCallback)   # ProgressCallback reports instead
    return trainer


def train_class_weights(train: SplitInfo, layout: heads.HeadLayout | None):
    """Single task: the two class weights; multi-head: field -> weights of its head."""
    if layout is None:
        return class_weights(train.class_counts)
    return {head.name: heads.head_class_weights(head, train.head_counts.total(head.name)) for head in layout.heads}
