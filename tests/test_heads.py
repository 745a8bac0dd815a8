"""Multi-head experts (stages/heads.py, stages/training/metrics.py, the multi-head path of
stages/training/): params, head layouts read from the real taxonomy, the masked loss, per-head
metrics against hand-computed values, and end-to-end runs of both experts on tiny from-config models
(saved, reloaded with load_expert to the same test metrics; a 2-process torchrun run)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from stages import heads, training
from stages.common import project_path
from stages.training.metrics import categorical_metrics, multilabel_metrics
from stages.heads import MISSING, HeadCounts, HeadLayoutError, MultiHeadLoss, head_layout, load_expert
from stages.config import ConfigError, Part, build
from stages.training import ExpertPaths, ShardStream, TrainConfig
from tests.test_train_text import count_keys, tiny_deberta, torchrun_text  # noqa: F401 - tiny_deberta: fixture
from tests.test_train_vision import tiny_siglip  # noqa: F401 - fixture
from tests.test_training import write_shards

REPO = Path(__file__).resolve().parent.parent
TAXONOMY = str(project_path("split", "label_taxonomy"))
UNIFIED = ["abuse_hate", "offensive", "target_type", "target_group"]


# ---------------------------------------------------------------- params

def train_config(params: dict) -> TrainConfig:
    """The train group as the stages build it (stages/config.py)."""
    return build([Part("train", TrainConfig)], params)[0]


def train_group(text: str) -> TrainConfig:
    return train_config({"train": yaml.safe_load(text) or {}})


def test_params_yaml_default_stays_the_single_task_abuse_hate_expert():
    cfg = train_config(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert (cfg.tasks.head_weights, cfg.tasks.primary, cfg.tasks.single, cfg.tasks.layout) == (
        {"abuse_hate": 1.0}, "abuse_hate", "abuse_hate", None)
    assert cfg.label_taxonomy is None   # split.label_taxonomy comes through dvc.yaml's cmd (--label-taxonomy)


@pytest.mark.parametrize("text, weights, multi", [
    ("tasks: [abuse_hate]", {"abuse_hate": 1.0}, False),                   # -S 'train.tasks=[abuse_hate]'
    ("tasks: [offensive]", {"offensive": 1.0}, False),
    ("tasks: [offensive, abuse_hate]", {"offensive": 1.0, "abuse_hate": 1.0}, True),   # offensive picks the epoch
    ("tasks: [target_type, offensive]\nhead_weights: {offensive: 0.5}", {"target_type": 1.0, "offensive": 0.5}, True),
    ("tasks: [shaming]", {"shaming": 1.0}, True),                            # an aux field: multi-head path
    ("epochs: 3", {"abuse_hate": 1.0}, False),
])
def test_tasks_are_read_once_into_fields_weights_and_layout(text, weights, multi):
    tasks = train_group(text).tasks
    first = next(iter(weights))
    # the first field picks the epoch
    assert (tasks.head_weights, tasks.names, tasks.primary) == (weights, tuple(weights), first)
    assert tasks.single == (None if multi else first)
    assert (tasks.layout.names if multi else tasks.layout) == (tuple(weights) if multi else None)


@pytest.mark.parametrize("text, message", [
    ("tasks: [abuse_hate, abuse_hate]", "train.tasks: ['abuse_hate', 'abuse_hate'] must be distinct field names"),
    ("tasks: abuse_hate", "train.tasks: 'abuse_hate' must be a list of label fields"),
    ("tasks: []", "train.tasks: [] must be a list of label fields"),
    ("tasks: [hate]", "train.tasks: 'hate' is neither a unified field (abuse_hate, offensive, target_group, "
                      "target_type) nor an aux label of "),
    ("head_weights: {sentiment: 2}",
     "train.head_weights: {'sentiment': 2.0} must map fields of train.tasks to weights >= 0 (not learned: sentiment)"),
    ("head_weights: {abuse_hate: -1}",
     "train.head_weights: {'abuse_hate': -1.0} must map fields of train.tasks to weights >= 0 (not learned: -)"),
    ("head_weights: {abuse_hate: .nan}", "train.head_weights.abuse_hate: nan is not a finite number"),
    ("task: offensive", "params group 'train': unknown key task"),            # the old shortcut is gone
    ("primary: offensive", "params group 'train': unknown key primary"),      # the first of tasks picks the epoch
    ("target_group_level: group", "train.target_group_level: 'group' is not one of name, category"),
])
def test_bad_task_params_are_one_clear_error(text, message):
    with pytest.raises(ConfigError) as err:
        train_group(text)
    assert str(err.value).startswith(message)


# ---------------------------------------------------------------- layouts from the taxonomy

def test_head_layouts_are_read_from_the_taxonomy():
    taxonomy = json.loads(Path(TAXONOMY).read_text())
    layout = head_layout(("abuse_hate", "target_type", "target_group", "sentiment", "shaming", "hatexplain_label"),
                         TAXONOMY)
    kinds = {h.name: (h.kind, h.classes) for h in layout.heads}
    assert kinds["abuse_hate"] == ("binary", ("not_abuse_hate", "abuse_hate"))
    assert kinds["target_type"] == ("categorical", ("none", "individual", "group", "other"))
    assert kinds["target_group"] == ("multilabel", tuple(taxonomy["fields"]["target_group"]["vocabulary"]))
    assert kinds["sentiment"] == ("categorical", tuple(taxonomy["aux"]["sentiment"]["levels"]))
    assert kinds["shaming"] == ("binary", ("not_shaming", "shaming"))
    assert kinds["hatexplain_label"] == ("categorical", ("hatespeech", "offensive", "normal"))
    assert layout.width == 2 + 4 + 25 + 5 + 2 + 3 and len(layout.id2label()) == layout.width
    assert layout.id2label()[2] == "target_type=none"
    category = head_layout(("target_group",), TAXONOMY, "category").head("target_group")
    assert category.classes == ("gender", "race_ethnicity", "religion", "sexual_orientation_gender_identity",
                                "origin", "disability", "economic", "other")


@pytest.mark.parametrize("name, message", [
    ("rationales", "declares 'rationales' as type 'raw' without a fixed set of values; it cannot be learned"),
    ("functionality", "declares 'functionality' as type 'categorical' without a fixed set of values"),
    ("hate", "train.tasks: 'hate' is neither a unified field (abuse_hate, offensive, target_group, target_type)"),
])
def test_fields_without_a_head_layout_are_refused(name, message):
    with pytest.raises(HeadLayoutError, match=message.replace("(", r"\(").replace(")", r"\)")):
        head_layout((name,), TAXONOMY)


def test_targets_are_encoded_per_head_with_missing_fields_masked():
    layout = head_layout(("abuse_hate", "target_type", "target_group", "shaming"), TAXONOMY, "category")
    mami = {"labels": {"abuse_hate": 1, "offensive": None, "target_type": None, "target_group": ["women", "black"]},
            "aux": {"shaming": 0}}
    target = layout.encode(mami, "x")
    assert target == [1.0] + [MISSING] + [1.0, 1.0, 0, 0, 0, 0, 0, 0] + [0.0]
    assert layout.decode_labels(np.array(target)) == {"abuse_hate": 1, "target_type": None,
                                                      "target_group": [1, 1, 0, 0, 0, 0, 0, 0], "shaming": 0}
    unlabeled = {"labels": {"abuse_hate": None, "offensive": 1, "target_type": None, "target_group": None}, "aux": {}}
    assert layout.encode(unlabeled, "x") is None   # offensive is not requested: nothing to learn
    with pytest.raises(HeadLayoutError, match=r"^shard-0.tar: k: labels.target_type = 'crowd', expected one of "):
        layout.encode({"labels": {**unlabeled["labels"], "target_type": "crowd"}}, "shard-0.tar: k")


# ---------------------------------------------------------------- the masked loss

def test_a_head_without_labeled_rows_contributes_nothing_and_gets_zero_gradient():
    layout = head_layout(("abuse_hate", "target_type", "target_group"), TAXONOMY, "category")
    torch.manual_seed(0)
    features, output = torch.randn(3, 8), torch.nn.Linear(8, layout.width)   # the shared output layer
    groups = [0.0] * 8
    labels = torch.tensor([[1.0, MISSING, *[1.0] + groups[1:]],
                           [0.0, MISSING, *[MISSING] * 8],
                           [MISSING, MISSING, *groups]])
    weights = {"abuse_hate": [0.75, 1.5], "target_group": [2.0] * 8}
    loss_fn = MultiHeadLoss(layout, weights, {"target_group": 0.5})
    logits = output(features)
    loss = loss_fn(logits, labels)
    loss.backward()
    by_hand = (torch.nn.functional.cross_entropy(logits[:2, 0:2], torch.tensor([1, 0]),
                                                 weight=torch.tensor([0.75, 1.5]))
               + 0.5 * 8 * torch.nn.functional.binary_cross_entropy_with_logits(   # summed over the 8 labels
                   logits[[0, 2], 6:14], labels[[0, 2], 2:10], pos_weight=torch.full((8,), 2.0)))
    assert torch.allclose(loss, by_hand)
    slices = layout.logit_slices()
    assert torch.count_nonzero(output.weight.grad[slices["target_type"]]) == 0
    assert torch.count_nonzero(output.bias.grad[slices["target_type"]]) == 0
    assert torch.count_nonzero(output.weight.grad[slices["abuse_hate"]]) == 16
    assert torch.count_nonzero(output.weight.grad[slices["target_group"]]) == 64


def test_class_weights_and_majorities_per_head_from_train_counts():
    layout = head_layout(("abuse_hate", "target_type", "target_group"), TAXONOMY, "category")
    counts = HeadCounts(layout)
    women, none = ["women"], []
    for dataset, abuse, kind, groups in [("a", 1, None, women), ("a", 1, None, women), ("a", 0, None, none),
                                         ("b", None, "group", None), ("b", None, "none", None),
                                         ("b", None, "group", None)]:
        meta = {"labels": {"abuse_hate": abuse, "target_type": kind, "target_group": groups}}
        counts.add(dataset, layout.encode(meta, "x"))
    assert counts.total("abuse_hate").tolist() == [1, 2] and counts.labeled("target_type") == 3
    assert counts.total("target_group").tolist() == [3, 2, 0, 0, 0, 0, 0, 0, 0]   # labeled, then per category
    assert heads.head_class_weights(layout.head("abuse_hate"), counts.total("abuse_hate")) == [1.5, 0.75]
    assert heads.head_class_weights(layout.head("target_type"), counts.total("target_type")) == [
        0.75, 1.0, 0.375, 1.0]   # N / (4 n_c)
    assert heads.head_class_weights(layout.head("target_group"), counts.total("target_group"))[:2] == [
        round(0.5 ** 0.5, 6), 1.0]   # sqrt(negatives / positives)
    assert heads.majority_target(layout.head("target_type"), counts.of("b", "target_type")) == 2
    assert heads.majority_target(layout.head("target_type"), counts.of("a", "target_type")) == 2   # overall
    assert heads.majority_target(layout.head("target_group"), counts.total("target_group")).tolist() == [1] + [0] * 7


def test_multilabel_outputs_start_at_the_weighted_train_prior():
    layout = head_layout(("abuse_hate", "target_group"), TAXONOMY, "category")
    counts = HeadCounts(layout)
    for groups in (["women"], ["women", "black"], [], []):
        counts.add("mami", layout.encode({"labels": {"abuse_hate": 1, "target_group": groups}}, "x"))
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, layout.width))
    abuse_bias = model[1].bias[:2].clone()
    weights = {"target_group": heads.head_class_weights(layout.head("target_group"), counts.total("target_group"))}
    assert weights["target_group"][:3] == [1.0, round(3 ** 0.5, 6), 1.0]   # sqrt(negatives / positives)
    every = counts.total("target_group").copy()
    every[1] = every[0]   # a label all labeled examples have: weight 1, not 0
    assert heads.head_class_weights(layout.head("target_group"), every)[0] == 1.0
    heads.init_label_priors(model, layout, counts, weights)
    probs = torch.sigmoid(model[1].bias[2:]).tolist()
    # gender: p = 2/4, w = 1 -> 0.5; race: p = 1/4, w = sqrt 3 -> sqrt3/4 / (sqrt3/4 + 3/4); never seen: p = 1e-3
    assert probs[0] == pytest.approx(0.5) and probs[1] == pytest.approx(3 ** 0.5 / (3 ** 0.5 + 3), abs=1e-6)
    assert probs[2] == pytest.approx(1e-3, abs=1e-6)
    assert torch.equal(model[1].bias[:2], abuse_bias)   # single-label heads keep their init


# ---------------------------------------------------------------- per-head metrics

def test_categorical_metrics_match_hand_computed_values():
    labels = np.array([0, 1, 2, 2, 3])
    probs = np.eye(4)[[0, 2, 2, 2, 0]]          # predicted 0, 2, 2, 2, 0
    # F1 per class: 0: P 1/2 R 1 -> 2/3; 1: 0; 2: P 2/3 R 1 -> 0.8; 3: 0. Majority 2: F1(2) = 2*0.4/1.4
    assert categorical_metrics(labels, probs, majority=2) == {
        "accuracy": 0.6, "f1_macro": round((2 / 3 + 0.8) / 4, 6), "majority_baseline_accuracy": 0.4,
        "majority_baseline_f1_macro": round(0.8 / 1.4 / 4, 6), "support": 5}


def test_multilabel_metrics_match_hand_computed_values():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.2], [0.8, 0.4, 0.1], [0.3, 0.2, 0.7], [0.1, 0.6, 0.4]])
    # predicted [1,0,0] [1,0,0] [0,0,1] [0,1,0]: tp 3, fp 1, fn 1 -> micro 0.75; label 0 F1 1, label 1 F1 2/3
    # (label 2 has no gold positive: not in the macro average); exact matches: rows 0 and 3
    assert multilabel_metrics(labels, probs, majority=np.array([0, 0, 0])) == {
        "f1_micro": 0.75, "f1_macro": round((1 + 2 / 3) / 2, 6), "exact_match": 0.5,
        "majority_baseline_f1_micro": 0.0, "majority_baseline_f1_macro": 0.0, "majority_baseline_exact_match": 0.25,
        "support": 4, "positives": 4}


def test_split_metrics_per_head_and_dataset_skip_unlabeled_rows():
    layout = head_layout(("abuse_hate", "target_type"), TAXONOMY)
    train = HeadCounts(layout)
    for dataset, meta in [("hm", {"abuse_hate": 1, "target_type": None}),
                          ("hm", {"abuse_hate": 1, "target_type": None}),
                          ("olid", {"abuse_hate": None, "target_type": "group"})]:
        train.add(dataset, layout.encode({"labels": meta}, "x"))
    info = training.SplitInfo("train", (), 3, 0, (0, 0), {}, train)
    labels = np.array([[1, MISSING], [0, MISSING], [MISSING, 2], [MISSING, 0]])
    probs = np.array([[0.2, 0.8, .25, .25, .25, .25], [0.6, 0.4, .25, .25, .25, .25],
                      [0.5, 0.5, 0.1, 0.1, 0.7, 0.1], [0.5, 0.5, 0.1, 0.1, 0.7, 0.1]])
    pred = training.Predictions("test", ["h1", "h2", "o1", "o2"], ["hm", "hm", "olid", "olid"], labels, probs)
    metrics = training.split_metrics(pred, info, layout)
    assert metrics["abuse_hate"]["support"] == 2 and metrics["abuse_hate"]["accuracy"] == 1.0
    assert metrics["abuse_hate"]["majority_baseline_f1_macro"] == round(1 / 3, 6)   # always 1 on [1, 0]
    assert set(metrics["abuse_hate"]["by_dataset"]) == {"hm"}
    assert metrics["target_type"]["accuracy"] == 0.5 and metrics["target_type"]["majority_baseline_accuracy"] == 0.5
    assert set(metrics["target_type"]["by_dataset"]) == {"olid"}


# ---------------------------------------------------------------- end to end

def annotate_like_the_releases(meta: dict) -> None:
    """Hateful Memes: abuse_hate only; MAMI: abuse_hate + [women] when misogynous + shaming;
    OLID: offensive + target_type only."""
    labels, dataset = meta["labels"], meta["dataset"]
    if dataset in ("hateful_memes", "mami"):
        labels.update(offensive=None, target_type=None, target_group=None)
    if dataset == "mami":
        labels["target_group"] = None if labels["abuse_hate"] != 1 else ["women"]
        meta["aux"] = {"shaming": labels["abuse_hate"]}
    if dataset == "olid":
        labels.update(abuse_hate=None, target_group=None)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shards")
    return root, write_shards(root, {"train": 32, "val": 12, "test": 12}, nulls=3, per_shard=10,
                              relabel=annotate_like_the_releases)


def paths_under(out: Path, shards_dir: Path) -> ExpertPaths:
    return ExpertPaths(shards_dir, out / "expert", out / "metrics.json", out / "live", out / "predictions.jsonl",
                       out / "scratch", report=out / "report.json")


def expected_examples(records: list[dict], tasks: list[str], images_only: bool = False) -> dict[str, int]:
    def value(record, name):
        return record["labels"][name] if name in record["labels"] else record["aux"].get(name)

    kept = [r for r in records if r["has_image"] or not images_only]
    return {name: sum(value(r, name) is not None for r in kept) for name in tasks}


def reload_test_metrics(paths: ExpertPaths, kinds, fields_wanted, decode_for, collate_for):
    model, layout = load_expert(paths.out_model)
    tasks = training.Tasks(dict.fromkeys(layout.names, 1.0), layout)
    splits = training.read_splits(paths.shards, kinds, tasks)
    stream = ShardStream(splits["test"], tasks, fields_wanted, decode_for(paths.out_model), 4, distributed=False)
    preds = training.predict(model, stream, collate_for(paths.out_model), 4, layout=layout)
    return training.split_metrics(preds, splits["train"], layout), preds


@pytest.fixture(scope="module")
def text_run(shards, tiny_deberta, tmp_path_factory):  # noqa: F811 - fixture
    from stages.train_text import TextConfig, train_text

    root, _ = shards
    paths = paths_under(tmp_path_factory.mktemp("multi_text"), root)
    cfg = TrainConfig(tasks=tuple(UNIFIED) + ("shaming",), epochs=2, batch_size=8, learning_rate=1e-3,
                      head_weights={"target_group": 0.5}, label_taxonomy=TAXONOMY)
    return paths, train_text(paths, cfg, TextConfig(model=str(tiny_deberta), max_length=32))


def test_multi_head_text_expert_reports_every_head_per_dataset(text_run, shards):
    paths, metrics = text_run
    _, written = shards
    assert json.loads(paths.report.read_text()) == metrics   # the full record; the DVC metric: its headline
    headline = json.loads(paths.metrics.read_text())
    assert headline == training.headline(metrics) and count_keys(headline) <= 40
    assert set(headline["val"]) == set(metrics["val"])   # every head's main metric, the primary's scores
    assert headline["val"]["abuse_hate"]["auroc"] == metrics["val"]["abuse_hate"]["auroc"]
    assert headline["val"]["target_group"] == metrics["val"]["target_group"]["f1_micro"]
    assert metrics["tasks"] == UNIFIED + ["shaming"] and "task" not in metrics and "primary" not in metrics
    assert metrics["head_weights"] == {**dict.fromkeys(UNIFIED + ["shaming"], 1.0), "target_group": 0.5}
    for split in ("train", "val", "test"):
        assert metrics["head_examples"][split] == expected_examples(written[split], UNIFIED + ["shaming"])
        # an example counts when any requested field is labeled: only the null Hateful Memes/MAMI ones are skipped
        assert metrics["examples"][split] + metrics["skipped_null_labels"][split] == len(written[split])
    assert set(metrics["class_weights"]) == set(UNIFIED + ["shaming"])
    assert len(metrics["class_weights"]["target_group"]) == 25
    for split in ("val", "test"):
        block = metrics[split]
        assert set(block) == set(UNIFIED + ["shaming"])
        assert {"accuracy", "f1_macro", "auroc", "ece", "majority_baseline_f1_macro"} <= set(block["abuse_hate"])
        assert {"accuracy", "f1_macro", "majority_baseline_f1_macro"} <= set(block["target_type"])
        assert {"f1_micro", "f1_macro", "exact_match", "majority_baseline_exact_match"} <= set(block["target_group"])
        assert set(block["abuse_hate"]["by_dataset"]) == {"hateful_memes", "mami"}
        assert set(block["offensive"]["by_dataset"]) == set(block["target_type"]["by_dataset"]) == {"olid"}
        assert set(block["target_group"]["by_dataset"]) == set(block["shaming"]["by_dataset"]) == {"mami"}
        assert block["offensive"]["support"] == expected_examples(written[split], ["offensive"])["offensive"]
    rows = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    truth = {r["id"]: r for split in ("val", "test") for r in written[split]}
    for row in rows:
        assert set(row) == {"id", "dataset", "split", "labels", "probs"} and set(row["probs"]) == set(metrics["tasks"])
        assert 0 <= row["probs"]["abuse_hate"] <= 1 and len(row["probs"]["target_type"]) == 4
        assert len(row["probs"]["target_group"]) == 25
        assert row["labels"]["offensive"] == truth[row["id"]]["labels"]["offensive"]
    config = json.loads((paths.out_model / "config.json").read_text())
    assert [h["name"] for h in config[heads.CONFIG_KEY]] == metrics["tasks"] and len(config["id2label"]) == 35


def test_saved_multi_head_text_expert_reloads_to_the_same_test_metrics(text_run):
    from transformers import AutoTokenizer, DataCollatorWithPadding

    from stages.train_text import TextDecoder

    paths, metrics = text_run
    reloaded, preds = reload_test_metrics(
        paths, ("image", "textonly"), ("txt",),
        lambda folder: TextDecoder(AutoTokenizer.from_pretrained(folder), 32),
        lambda folder: DataCollatorWithPadding(AutoTokenizer.from_pretrained(folder)))
    assert reloaded == metrics["test"]
    rows = {r["id"]: r for r in map(json.loads, paths.predictions.read_text().splitlines()) if r["split"] == "test"}
    assert np.allclose([rows[i]["probs"]["abuse_hate"] for i in preds.ids], preds.probs[:, 1], atol=1e-6)


def test_multi_head_vision_expert_trains_and_reloads(shards, tiny_siglip, tmp_path):  # noqa: F811 - fixture
    from transformers import AutoImageProcessor

    from stages.train_vision import ImageDecoder, VisionConfig, collate_images, train_vision

    root, written = shards
    paths = paths_under(tmp_path, root)
    cfg = TrainConfig(tasks=("abuse_hate", "target_group"), target_group_level="category", epochs=1, batch_size=8,
                      learning_rate=1e-3, label_taxonomy=TAXONOMY)
    metrics = train_vision(paths, cfg, VisionConfig(model=str(tiny_siglip), weights=None))
    assert metrics["head_examples"]["test"] == expected_examples(written["test"], ["abuse_hate", "target_group"],
                                                                 images_only=True)
    assert len(metrics["class_weights"]["target_group"]) == 8
    reloaded, _ = reload_test_metrics(paths, ("image",), training.IMAGE_FIELDS,
                                      lambda folder: ImageDecoder(AutoImageProcessor.from_pretrained(folder)),
                                      lambda folder: collate_images)
    assert reloaded == metrics["test"]


def test_single_task_expert_still_loads_as_a_plain_two_class_model(tiny_deberta):  # noqa: F811 - fixture
    model, layout = load_expert(tiny_deberta)
    assert layout is None and type(model).__name__ == "DebertaV2ForSequenceClassification"


def test_torchrun_two_processes_train_two_heads(shards, tiny_deberta, tmp_path):  # noqa: F811 - fixture
    """`torchrun --nproc_per_node 2` on CPU with tasks [abuse_hate, offensive]: the ranks read
    disjoint shares of every example with either label (padded to equal counts), rank 0 writes once."""
    root, written = shards
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "train": {"tasks": ["abuse_hate", "offensive"], "epochs": 1, "batch_size": 4, "learning_rate": 1e-3},
        "text": {"model": str(tiny_deberta), "max_length": 32}}))
    out, trace = tmp_path / "out", tmp_path / "trace"
    result = torchrun_text(root, params, out, trace)
    assert result.stdout.count("text expert:") == 1
    train_ids = {r["id"] for r in written["train"]
                 if r["labels"]["abuse_hate"] is not None or r["labels"]["offensive"] is not None}
    ranks = [(trace / f"train-epoch0-rank{r}-worker0.txt").read_text().split() for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == -(-len(train_ids) // 2)
    assert set(ranks[0]) | set(ranks[1]) == train_ids
    metrics = json.loads((out / "report.json").read_text())
    assert metrics["tasks"] == ["abuse_hate", "offensive"] and metrics["examples"]["train"] == len(train_ids)
    assert set(json.loads((out / "text.json").read_text())["test"]) == {"abuse_hate", "offensive"}
    assert set(metrics["test"]) == {"abuse_hate", "offensive"}


def test_multi_head_experts_score_the_diagnostic_split_with_the_abuse_hate_head(tiny_deberta, tmp_path):  # noqa: F811
    from stages.train_text import TextConfig, train_text
    from tests.test_diagnostic import write_diagnostic_split

    root = tmp_path / "shards"
    write_shards(root, {"train": 12, "val": 6, "test": 6}, nulls=0, relabel=annotate_like_the_releases)
    write_diagnostic_split(root, 10)   # abuse_hate and target_group ([]) labeled, text-only
    tasks = training.Tasks.read(["abuse_hate", "target_group"], label_taxonomy=TAXONOMY)
    assert training.read_diagnostic(root, ("image",), tasks) == (
        None, "text-only suite(s) (hatecheck): this expert reads image shards only")
    text = TextConfig(model=str(tiny_deberta), max_length=32)
    for tasks, expected in ((("target_group", "abuse_hate"), 10), (("offensive", "target_group"), None)):
        cfg = TrainConfig(tasks=tasks, epochs=1, batch_size=8, label_taxonomy=TAXONOMY)
        metrics = train_text(paths_under(tmp_path / tasks[0], root), cfg, text)
        if expected:
            assert metrics["diagnostic"]["cases"] == expected and "accuracy_abuse_hate" in metrics["diagnostic"]
        else:
            assert metrics["diagnostic"] == {"skipped": "no abuse_hate head with labeled diagnostic examples"}


@pytest.mark.parametrize("override, tasks, epochs", [
    ("train.tasks=[abuse_hate]", ("abuse_hate",), 4),
    ("train.tasks=[abuse_hate,offensive,target_type,target_group]", tuple(UNIFIED), 4),
    ("train.epochs=3", ("abuse_hate",), 3),
])
def test_dvc_exp_run_set_param_edits_give_a_valid_train_config(override, tasks, epochs, tmp_path):
    """`dvc exp run -S <override>` rewrites params.yaml with dvc.utils.hydra.apply_overrides; the
    rewritten train group loads (label_taxonomy comes on the command line, from split.label_taxonomy)."""
    pytest.importorskip("hydra")
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    apply_overrides(params, [override])
    groups = yaml.safe_load(params.read_text())
    cfg = train_config(groups)
    assert (cfg.tasks.names, cfg.epochs, cfg.tasks.primary) == (tasks, epochs, "abuse_hate")
    assert cfg.label_taxonomy is None and groups["split"]["label_taxonomy"] == "Step_3/label_taxonomy.json"
