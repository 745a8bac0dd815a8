"""stages/fuse.py: late fusion of the two experts, fitted on val's fit part only (scores.val_part).

The predictions are synthetic but shaped like the experts' (stages/training/outputs.py writes them;
one test reads what that writer writes): memes of two datasets scored by both experts, a text-only
dataset and a few memes without image scored by the text expert alone, a minority positive class,
probabilities rounded to 6 decimals. Each expert's logit is `signal` x (+1 | -1 by the gold label)
plus its own unit noise, so signals are independent unless a test says otherwise. The stage on
the real pilot predictions runs in tests/test_pipeline.py (the end-to-end `dvc repro`).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stages import fuse, predictions
from stages.errors import InputError
from stages.scores import val_part

IMAGE_DATASETS = ("hateful_memes", "mami")
TEXT_DATASET = "olid"
TASK = "abuse_hate"


def expert_line(example_id: str, dataset: str, split: str, label: int, logit: float) -> str:
    """A single-task expert's prediction row, as stages/training/outputs.py writes it."""
    return json.dumps({"dataset": dataset, "id": example_id, "labels": {TASK: label},
                       "probs": {TASK: round(1 / (1 + math.exp(-logit)), 6)}, "split": split}, sort_keys=True)


def synthetic_predictions(text_signal: float, vision_signal: float, *, seed: int = 0, per_split: int = 240,
                          no_image_share: float = 0.05, positive_rate: float = 0.35) -> tuple[list[str], list[str]]:
    """(text expert's lines, vision expert's lines) over val and test: `per_split` memes per image
    dataset and split (some without image: text expert only) and as many text-only examples."""
    rng = np.random.default_rng(seed)
    text, vision = [], []
    for split in ("test", "val"):
        for dataset in (*IMAGE_DATASETS, TEXT_DATASET):
            for index in range(per_split):
                label = int(rng.random() < positive_rate)
                sign = 2 * label - 1
                example_id = f"{dataset}:{split}-{index:04d}"
                text.append(expert_line(example_id, dataset, split, label, text_signal * sign + rng.normal()))
                vision_logit = vision_signal * sign + rng.normal()
                if dataset != TEXT_DATASET and rng.random() >= no_image_share:
                    vision.append(expert_line(example_id, dataset, split, label, vision_logit))
    return sorted(text), sorted(vision)


def parsed(lines: tuple[list[str], list[str]]):
    text, vision = lines
    return predictions.parse_predictions(text, "text.jsonl"), predictions.parse_predictions(vision, "vision.jsonl")


def run_fuse(lines, **settings):
    return fuse.fuse(*parsed(lines), fuse.FuseConfig(**settings))


def relabel(lines: list[str], label_of) -> list[str]:
    """The lines with each row's gold label replaced by `label_of(row)`."""
    return [json.dumps({**row, "labels": {TASK: label_of(row)}}, sort_keys=True) for row in map(json.loads, lines)]


def flip_labels(lines: list[str], split: str, share: float = 1.0, seed: int = 1, part: str | None = None) -> list[str]:
    """The gold label of (a seeded share of) one split's examples (`part`: of that val part only)
    flipped; the same examples in both experts' files for the same seed."""
    def label_of(row):
        chosen = np.random.default_rng([seed, int(row["id"].rsplit("-", 1)[1])]).random() < share
        chosen = chosen and (part is None or val_part(row["id"]) == part)
        return 1 - row["labels"][TASK] if row["split"] == split and chosen else row["labels"][TASK]
    return relabel(lines, label_of)


def test_cross_fitted_fusion_weighs_the_expert_that_carries_signal():
    for text_signal, vision_signal, strong, weak in ((1.2, 0.0, "text", "vision"), (0.0, 1.2, "vision", "text")):
        model, _, report = run_fuse(synthetic_predictions(text_signal, vision_signal))
        weights = model.fields[TASK]
        assert getattr(weights, strong) > 1.0
        assert 0 <= getattr(weights, weak) < 0.25 * getattr(weights, strong), weights   # noise: ~2 SE at most
        test = report["scores"][TASK]["test"]["all"]
        assert test["fused"]["auroc"] >= test[strong]["auroc"] - 0.01
        assert test[weak]["auroc"] < 0.6 < test[strong]["auroc"]


def test_fusion_beats_the_better_expert_when_both_carry_independent_signal():
    _, _, report = run_fuse(synthetic_predictions(0.8, 0.6))
    for split in ("val_fit", "test"):   # val_fit: out-of-fold scores
        scores = report["scores"][TASK][split]["all"]
        better = max(("text", "vision"), key=lambda expert: scores[expert]["auroc"])
        assert scores["fused"]["auroc"] > scores[better]["auroc"] + 0.02, (split, scores)
        assert scores["fused"]["f1_macro"] >= scores[better]["f1_macro"], (split, scores)


def test_a_negative_weight_is_dropped_not_flipped():
    """An expert anti-correlated with the gold on val gets weight 0: the other alone is refitted."""
    model, _, _ = run_fuse(synthetic_predictions(1.0, -0.8))
    assert model.fields[TASK].vision == 0.0 and model.fields[TASK].text > 1.0


def test_when_no_expert_earns_a_weight_the_better_one_is_used_alone():
    """Both logits anti-correlated with the gold on val: no constant 0.5 for every example (which
    decides class 0 everywhere), but the expert with the higher val AUROC, unchanged."""
    model, _, report = run_fuse(synthetic_predictions(-0.3, -1.0))
    weights = model.fields[TASK]
    assert (weights.intercept, weights.text, weights.vision) == (0.0, 1.0, 0.0)
    test = report["scores"][TASK]["test"]["all"]
    assert test["fused"]["auroc"] == test["text"]["auroc"] != 0.5


def test_changing_test_labels_changes_no_fusion_weight():
    text, vision = synthetic_predictions(0.8, 0.6)
    model, fused, report = run_fuse((text, vision))
    flipped_model, flipped_fused, flipped_report = run_fuse((flip_labels(text, "test"), flip_labels(vision, "test")))
    assert flipped_model.to_dict() == model.to_dict()
    val_probs = [row["probs"] for row in fused if row["split"] == "val"]
    assert [row["probs"] for row in flipped_fused if row["split"] == "val"] == val_probs
    assert [row["probs"] for row in flipped_fused] == [row["probs"] for row in fused]
    # the flip reached the scoring (test only), and val labels do move the weights
    test_auroc = report["scores"][TASK]["test"]["all"]["fused"]["auroc"]
    assert flipped_report["scores"][TASK]["test"]["all"]["fused"]["auroc"] == pytest.approx(1 - test_auroc)
    assert flipped_report["scores"][TASK]["val_fit"] == report["scores"][TASK]["val_fit"]
    noisy_val_model, _, _ = run_fuse((flip_labels(text, "val", 0.2), flip_labels(vision, "val", 0.2)))
    assert noisy_val_model.fields[TASK] != model.fields[TASK]


def test_labels_of_the_val_part_the_experts_selected_on_change_no_fusion_weight():
    """The experts picked their epoch on val's select part: fusion neither fits nor is scored on it."""
    text, vision = synthetic_predictions(0.8, 0.6)
    model, fused, report = run_fuse((text, vision))
    flipped = [flip_labels(flip_labels(lines, "val", part="select"), "test") for lines in (text, vision)]
    flipped_model, flipped_fused, flipped_report = run_fuse(flipped)
    assert flipped_model.to_dict() == model.to_dict()
    assert [row["probs"] for row in flipped_fused] == [row["probs"] for row in fused]
    assert flipped_report["scores"][TASK]["val_fit"] == report["scores"][TASK]["val_fit"]
    assert [row["labels"] for row in flipped_fused] != [row["labels"] for row in fused]   # the flip happened
    val_ids = {json.loads(line)["id"] for line in text if json.loads(line)["split"] == "val"}
    fit_ids = {i for i in val_ids if val_part(i) == "fit"}
    assert report["val_parts"] == {"fit_on": len(fit_ids), "left_out_selected_on": len(val_ids - fit_ids)}
    assert model.fields[TASK].val_examples == len(fit_ids & {json.loads(line)["id"] for line in vision})
    assert report["scores"][TASK]["val_fit"]["all"]["fused_all"]["support"] == len(fit_ids)
    noisy_fit_model, _, _ = run_fuse([flip_labels(lines, "val", 0.2, part="fit") for lines in (text, vision)])
    assert noisy_fit_model.fields[TASK] != model.fields[TASK]   # the fit part's labels do move them


def test_the_val_part_rule_is_pinned_and_splits_ids_near_half():
    """A fixed id always falls in the same part (a SHA-256 of the id, not Python's salted hash());
    ids shaped like the releases' split about half and half, per dataset too."""
    assert [val_part(i) for i in ("memotion1_image_1", "hateful_memes_42953", "mami_10000", "olid_90194")] == [
        "fit", "select", "select", "fit"]
    # SHA-256 of "a" starts with byte 0xca (even: select), of "" with 0xe3 (odd: fit)
    assert [val_part(i) for i in ("hateful_memes_dev_seen_04628", "a", "")] == ["fit", "select", "fit"]
    for dataset in ("hateful_memes_dev_seen", "mami", "memotion1_image", "olid", "hatexplain"):
        parts = [val_part(f"{dataset}_{n}") for n in range(4000)]
        assert 0.46 < parts.count("fit") / len(parts) < 0.54, dataset


def test_fit_fusion_reads_val_rows_only():
    text_rows, vision_rows = parsed(synthetic_predictions(0.8, 0.6))
    val_only = [{key: row for key, row in rows.items() if row.split == "val"} for rows in (text_rows, vision_rows)]
    assert fuse.fit_fusion(text_rows, vision_rows, [TASK], seed=0) == fuse.fit_fusion(*val_only, [TASK], seed=0)


def test_an_example_with_one_modality_uses_that_expert_alone_counted():
    text, vision = synthetic_predictions(0.8, 0.6, no_image_share=0.1)
    vision_only = json.loads(vision[0])["id"]   # its text expert row removed: scored by vision alone
    text = [line for line in text if json.loads(line)["id"] != vision_only]
    text_rows, vision_rows = parsed((text, vision))
    model, fused, report = fuse.fuse(text_rows, vision_rows, fuse.FuseConfig())
    by_id = {row["id"]: row for row in fused}
    assert set(by_id) == set(text_rows) | set(vision_rows)
    counts = report["examples"]
    assert counts[TEXT_DATASET] == {"fused": 0, "text_alone_no_image": len([i for i in text_rows if "olid" in i]),
                                    "vision_alone_no_text": 0}
    for dataset in IMAGE_DATASETS:
        ids = {i for i in set(text_rows) | set(vision_rows) if i.startswith(dataset)}
        no_image = {i for i in ids if i not in vision_rows}
        assert counts[dataset]["text_alone_no_image"] == len(no_image) > 0
        assert counts[dataset]["fused"] == len(ids & set(text_rows) & set(vision_rows))
        for example_id in no_image:
            assert by_id[example_id]["experts"] == ["text"]
            assert by_id[example_id]["probs"][TASK] == text_rows[example_id].probs[TASK]
    assert sum(c["vision_alone_no_text"] for c in counts.values()) == 1
    assert by_id[vision_only]["experts"] == ["vision"]
    assert by_id[vision_only]["probs"][TASK] == vision_rows[vision_only].probs[TASK]
    row = next(row for row in fused if row["experts"] == ["text", "vision"] and row["split"] == "test")
    weights = model.fields[TASK]
    expected = (weights.intercept + weights.text * fuse.to_logit(text_rows[row["id"]].probs[TASK])
                + weights.vision * fuse.to_logit(vision_rows[row["id"]].probs[TASK]))
    assert row["logits"][TASK] == pytest.approx(expected, abs=1e-4)
    assert row["labels"][TASK] == text_rows[row["id"]].labels[TASK]


def write_expert(tmp_path, name: str, lines: list[str]) -> list[str]:
    (tmp_path / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return [f"--{name}-predictions", str(tmp_path / f"{name}.jsonl")]


def stage_args(tmp_path, out: str, lines) -> list[str]:
    return [*write_expert(tmp_path, "text", lines[0]), *write_expert(tmp_path, "vision", lines[1]),
            "--fuse-predictions", str(tmp_path / out / "fusion.jsonl"),
            "--metrics", str(tmp_path / out / "metrics.json"), "--fuse-report", str(tmp_path / out / "report.json")]


def flat_keys(node, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return [prefix]
    return [key for name, value in node.items() for key in flat_keys(value, f"{prefix}.{name}" if prefix else name)]


def test_the_stage_writes_byte_identical_outputs_and_a_small_metric(tmp_path, capsys):
    lines = synthetic_predictions(0.8, 0.6)
    outputs = {}
    for out in ("first", "second"):
        fuse.main(stage_args(tmp_path, out, lines))
        outputs[out] = {name: (tmp_path / out / name).read_bytes()
                        for name in ("fusion.jsonl", "metrics.json", "report.json")}
    assert outputs["first"] == outputs["second"]
    assert "fused" in capsys.readouterr().out
    metrics = json.loads(outputs["first"]["metrics.json"])
    assert len(flat_keys(metrics)) <= 40, flat_keys(metrics)
    assert set(metrics[TASK]["test_by_dataset"]) == set(IMAGE_DATASETS)
    assert set(metrics[TASK]["test_by_dataset"]["hateful_memes"]) == {"auroc"}      # its published metric
    assert set(metrics[TASK]["test_by_dataset"]["mami"]) == {"f1_macro"}
    report = json.loads(outputs["first"]["report.json"])
    model = fuse.FusionModel.from_dict(report["model"])
    assert model == run_fuse(lines)[0]
    assert metrics[TASK]["weights"] == {"text": model.fields[TASK].text, "vision": model.fields[TASK].vision}
    rows = [json.loads(line) for line in outputs["first"]["fusion.jsonl"].decode().splitlines()]
    assert len(rows) == len(lines[0]) and rows == sorted(rows, key=lambda row: (row["split"], row["id"]))
    assert set(rows[0]) == {"id", "dataset", "split", "experts", "labels", "probs", "logits"}


def test_bad_predictions_stop_the_stage_with_one_line(tmp_path):
    text, vision = synthetic_predictions(0.8, 0.6, per_split=40)
    with pytest.raises(InputError, match=r"^.*text\.jsonl:2: not JSON"):
        fuse.main(stage_args(tmp_path, "out", ([text[0], "{oops", *text[2:]], vision)))
    disagreeing = [line.replace(f'"labels": {{"{TASK}": 1}}', f'"labels": {{"{TASK}": 0}}') for line in vision]
    with pytest.raises(InputError, match=r"^example .*disagree on the gold abuse_hate"):
        fuse.main(stage_args(tmp_path, "out", (text, disagreeing)))
    first_val = min(json.loads(line)["id"] for line in text if '"split": "val"' in line)
    def one_val_positive(row):
        return int(row["id"] == first_val) if row["split"] == "val" else row["labels"][TASK]
    with pytest.raises(InputError, match=r"^field 'abuse_hate' has \d+ examples in val's fit part .*, [01] positive"):
        fuse.main(stage_args(tmp_path, "out", (relabel(text, one_val_positive), relabel(vision, one_val_positive))))
    with pytest.raises(InputError, match=r"^fuse.fields: offensive not predicted"):
        fuse.main([*stage_args(tmp_path, "out", (text, vision)), "--fields", "[offensive]"])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir()), "partial outputs"


def test_reads_what_the_experts_write():
    """Single-task and multi-head experts write one row shape (their fields named); only binary fields are fused."""
    from stages import heads
    from stages.training import Tasks
    from stages.training.metrics import Predictions
    from stages.training.outputs import prediction_rows

    single = prediction_rows([Predictions("val", ["b", "a"], ["mami", "olid"], np.array([1, 0]),
                                          np.array([0.9, 0.2]))], Tasks.read([TASK]))
    rows = predictions.parse_predictions([json.dumps(row) for row in single], "text.jsonl")
    assert rows["b"] == fuse.PredictionRow("b", "mami", "val", {TASK: 1}, {TASK: 0.9})
    layout = heads.HeadLayout((heads.Head(TASK, "binary", (f"not_{TASK}", TASK)),
                               heads.Head("sentiment", "categorical", ("negative", "neutral", "positive"))))
    multi = prediction_rows([Predictions("test", ["m"], ["memotion1"], np.array([[heads.MISSING, 2.0]]),
                                         np.array([[0.3, 0.7, 0.1, 0.2, 0.7]]))],
                            Tasks({TASK: 1.0, "sentiment": 1.0}, layout))
    rows = predictions.parse_predictions([json.dumps(row) for row in multi], "vision.jsonl")
    assert rows["m"].labels == {TASK: None, "sentiment": 2}
    assert rows["m"].probs[TASK] == 0.7 and fuse.binary_fields(rows) == {TASK}
    unnamed = {"id": "b", "dataset": "mami", "split": "val", "label": 1, "prob": 0.9}   # which field?
    with pytest.raises(fuse.FuseError, match="text.jsonl:1: not a prediction row .*'labels'"):
        predictions.parse_predictions([json.dumps(unnamed)], "text.jsonl")
    good = {"id": "b", "dataset": "mami", "split": "val", "labels": {TASK: 1}, "probs": {TASK: 0.9}}
    for bad, message in (({"labels": [[TASK, 1]]}, "must be objects naming the same fields"),
                         ({"probs": {"offensive": 0.9}}, "must be objects naming the same fields"),
                         ({"labels": {TASK: "yes"}}, "a gold label must be null, a class index or a 0/1 list")):
        with pytest.raises(fuse.FuseError, match=f"^text.jsonl:2: .*{message}"):
            predictions.parse_predictions([json.dumps(good), json.dumps({**good, **bad})], "text.jsonl")
