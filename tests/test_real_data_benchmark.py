"""benchmarks/real_data.py's pieces and its real_data_tables.py (the full run is hand-run: real
data, about an hour per seed): which release files reach a run, seeds and --resume, the baselines'
per-dataset scores, the paired bootstrap differences, and the result tables."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from benchmarks import real_data
from benchmarks import real_data_tables as scores
from stages import training
from stages.records import DIAGNOSTIC_SPLIT
from tests.test_training import write_shards


def test_official_releases_are_preferred_and_only_labelled_text_files_reach_the_run(real_samples, tmp_path):
    found = real_data.discover(real_samples, {})
    if "memotion1" in found:
        assert found["memotion1"].name == "memotion1_official"
    copied = {}
    for name in ("hateful_memes", "memotion1"):
        if name in found:
            real_data.copy_release(name, found[name], tmp_path / name)
            copied[name] = sorted(p.name for p in (tmp_path / name).rglob("*") if p.is_file())
    if "hateful_memes" in copied:     # dev_unseen repeats 400 dev_seen memes; test_unseen has no labels
        assert copied["hateful_memes"] == ["dev_seen.jsonl", "train.jsonl"]
    if "memotion1" in copied:         # 2000_testdata.csv: no gold labels
        assert copied["memotion1"] == ["labels.csv"]
    assert real_data.discover(real_samples, {"olid": tmp_path / "hateful_memes"})["olid"] == tmp_path / "hateful_memes"


def test_tfidf_baseline_scores_each_dataset_on_its_own_labelled_test_examples(tmp_path):
    written = write_shards(tmp_path, {"train": 60, "test": 30, DIAGNOSTIC_SPLIT: 10}, nulls=3)
    out = scores.tfidf_baseline(tmp_path, ["abuse_hate", "offensive"])
    for field in ("abuse_hate", "offensive"):
        by_dataset = out["test"][field]["by_dataset"]
        labelled = [m for m in written["test"] if m["labels"][field] is not None]
        assert sum(v["support"] for v in by_dataset.values()) == len(labelled)
        for name, values in by_dataset.items():
            mine = [m for m in labelled if m["dataset"] == name]
            assert values["support"] == len(mine)
            assert values["positives"] == sum(m["labels"][field] for m in mine)
    # the example texts carry the label signal, so a bag of words beats the majority class
    assert out["test"]["abuse_hate"]["by_dataset"] and all(
        v["f1_macro"] > v["majority_baseline_f1_macro"] for v in out["test"]["abuse_hate"]["by_dataset"].values()
        if v["support"] >= 5)
    assert out["diagnostic"]["cases"] == 10     # the 3 cases without abuse_hate are not scored


def test_result_tables_put_baseline_and_published_numbers_beside_every_system():
    single = {"task": "abuse_hate", "test": {"by_dataset": {"hateful_memes": {
        "f1_macro": 0.6, "auroc": 0.66, "accuracy": 0.6, "majority_baseline_f1_macro": 0.34, "support": 500,
        "positives": 247}}}}
    multi = {"test": {"abuse_hate": {"by_dataset": {"hateful_memes": {
        "f1_macro": 0.55, "auroc": 0.6, "accuracy": 0.57, "majority_baseline_f1_macro": 0.34, "support": 500,
        "positives": 247}}}, "offensive": {"by_dataset": {}}}}
    rows = scores.result_rows({"single abuse_hate": [single], "multi-head": [multi]}, ["abuse_hate", "offensive"])
    systems = [row["system"] for row in rows]
    assert systems[:3] == ["single abuse_hate", "multi-head", "train-majority class"]
    assert systems[3].startswith("published: Text BERT")
    assert rows[2]["f1_macro"] == 0.34 and rows[3]["auroc"] == 0.6465
    table = scores.markdown(rows, [], [])
    assert table.splitlines()[0].startswith("| dataset | field | system | seeds | f1_macro")
    assert "| hateful_memes | abuse_hate | multi-head | 1 | 0.550 | 0.600 | 0.570 |  | 500 |" in table


def test_result_rows_average_each_expert_over_its_seeds_and_give_the_spread_of_the_main_metric():
    def run(f1, auroc, field, dataset):
        return {"task": field, "test": {"by_dataset": {dataset: {
            "f1_macro": f1, "auroc": auroc, "accuracy": 0.8, "majority_baseline_f1_macro": 0.42, "support": 860,
            "positives": 240}}}}
    runs = {"single offensive": [run(0.80, 0.88, "offensive", "olid"), run(0.82, 0.89, "offensive", "olid"),
                                 run(0.78, 0.87, "offensive", "olid")],
            "single abuse_hate": [run(0.60, 0.66, "abuse_hate", "hateful_memes"),
                                  run(0.60, 0.70, "abuse_hate", "hateful_memes")]}
    rows = scores.result_rows(runs, ["abuse_hate", "offensive"])
    olid = next(r for r in rows if r["dataset"] == "olid" and r["system"] == "single offensive")
    assert olid["seeds"] == 3 and np.isclose(olid["f1_macro"], 0.80) and np.isclose(olid["auroc"], 0.88)
    assert np.isclose(olid["sd"], 0.02)             # sample sd of macro-F1, OLID's main metric (AUROC's is 0.01)
    memes = next(r for r in rows if r["dataset"] == "hateful_memes" and r["system"] == "single abuse_hate")
    assert memes["seeds"] == 2 and np.isclose(memes["auroc"], 0.68)
    assert np.isclose(memes["sd"], np.std([0.66, 0.70], ddof=1))   # Hateful Memes: AUROC (its F1 does not move)


def test_guessing_at_the_train_rate_scores_what_a_simulated_guesser_scores():
    rng = np.random.default_rng(0)
    for positive_rate, guess_rate in ((0.585, 0.6), (0.5, 0.36), (0.03, 0.04), (0.28, 0.33)):
        labels = (rng.random(200_000) < positive_rate).astype(int)
        guesses = (rng.random(200_000) < guess_rate).astype(float)
        simulated = training.binary_f1_macro(labels, guesses)
        assert abs(scores.guessing_f1_macro(positive_rate, guess_rate) - simulated) < 0.005
    assert scores.guessing_f1_macro(0.5, 0.5) == 0.5
    assert scores.guessing_f1_macro(0.5, 1.0) == (2 * 0.5 / 1.5) / 2   # always class 1: F1 2/3 and 0


def test_chance_baseline_reads_each_datasets_train_rate(tmp_path):
    written = write_shards(tmp_path, {"train": 60, "test": 30}, nulls=3)
    out = scores.chance_baseline(tmp_path, ["offensive"])["test"]["offensive"]["by_dataset"]
    for name, values in out.items():
        train = [m["labels"]["offensive"] for m in written["train"] if m["dataset"] == name]
        test = [m["labels"]["offensive"] for m in written["test"] if m["dataset"] == name]
        assert values["support"] == len(test) and values["auroc"] == 0.5
        assert np.isclose(values["f1_macro"], scores.guessing_f1_macro(np.mean(test), np.mean(train)), atol=1e-6)


def test_paired_bootstrap_interval_separates_a_real_gap_from_none():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    good = np.clip(labels * 0.6 + rng.random(400) * 0.4, 0, 1)          # ranks every example right
    noise = rng.random((2, 400))                                          # two "seeds" of a coin
    diff, low, high = scores.paired_difference(labels, good[None], noise, "f1_macro", 300, rng)
    expected = training.binary_f1_macro(labels, good) - np.mean([training.binary_f1_macro(labels, p) for p in noise])
    assert np.isclose(diff, expected) and 0 < low < diff < high
    diff, low, high = scores.paired_difference(labels, noise[:1], noise[:1], "auroc", 300, rng)
    assert diff == low == high == 0.0                                     # the same system: no gap, no spread
    diff, low, high = scores.paired_difference(labels, noise[:1], noise[1:], "auroc", 300, rng)
    assert low < 0 < high                                                 # two coins: the interval holds 0


def test_difference_rows_pair_the_experts_and_tfidf_on_the_examples_they_share(tmp_path):
    rows = [("olid", f"olid_{n}", n % 2) for n in range(40)]
    single_task = tmp_path / "single.jsonl"
    single_task.write_text("".join(json.dumps({"dataset": d, "id": i, "labels": {"offensive": y},
                                               "probs": {"offensive": 0.3 + 0.4 * y}, "split": "test"}) + "\n"
                                   for d, i, y in rows) +
                           json.dumps({"dataset": "olid", "id": "v", "labels": {"offensive": 1},
                                       "probs": {"offensive": 0.9}, "split": "val"}) + "\n")
    multi = []
    for seed, wrong in enumerate((0, 10)):       # seed 1 decides its first 10 examples wrong
        path = tmp_path / f"multi{seed}.jsonl"
        path.write_text("".join(json.dumps({"dataset": d, "id": i, "labels": {"offensive": y, "abuse_hate": None},
                                            "probs": {"offensive": (0.4 if n < wrong else 0.6) if y else 0.1,
                                                      "abuse_hate": 0.2}, "split": "test"}) + "\n"
                                for n, (d, i, y) in enumerate(rows[:30])))
        multi.append(scores.read_test_predictions(path, ["abuse_hate", "offensive"]))
    single = scores.read_test_predictions(single_task, ["offensive"])
    assert len(single["offensive"]) == 40 and multi[0]["abuse_hate"] == {} and len(multi[0]["offensive"]) == 30
    tfidf = {"offensive": {i: ("olid", y, 0.5) for _, i, y in rows}}
    out = scores.difference_rows({"single offensive": [single], "multi-head": multi, "tfidf+logreg": [tfidf]},
                                 ["offensive"], resamples=50)
    assert [r["comparison"] for r in out] == ["multi-head - single offensive", "single offensive - tfidf+logreg",
                                              "multi-head - tfidf+logreg"]
    assert [r["examples"] for r in out] == [30, 40, 30] and all(r["metric"] == "f1_macro" for r in out)
    labels = np.array([y for _, _, y in rows[:30]])
    seed1 = training.binary_f1_macro(labels, np.where(labels == 1, np.r_[np.full(10, 0.4), np.full(20, 0.6)], 0.1))
    assert np.isclose(out[0]["difference"], (1.0 + seed1) / 2 - 1.0)        # the two seeds' mean minus single's 1.0
    assert np.isclose(out[1]["difference"], 1.0 - 1 / 3)                    # tfidf's 0.5 is decided class 0
    assert np.isclose(out[2]["difference"], (1.0 + seed1) / 2 - 1 / 3)
    again = scores.difference_rows({"single offensive": [single], "multi-head": multi, "tfidf+logreg": [tfidf]},
                                   ["offensive"], resamples=50)
    assert again == out                                                     # seeded per comparison


def test_hatecheck_reference_numbers_cover_every_functionality_of_the_real_suite(real_dataset):
    import csv
    with open(real_dataset("hatecheck") / "test_suite_cases.csv", encoding="utf-8", newline="") as f:
        counts: dict[str, int] = {}
        for row in csv.DictReader(f):
            counts[row["functionality"]] = counts.get(row["functionality"], 0) + 1
    paper = json.loads(scores.HATECHECK_PAPER.read_text(encoding="utf-8"))
    for model, accuracy in paper["models"].items():
        assert set(accuracy) == set(counts)
        weighted = sum(accuracy[f] * n for f, n in counts.items()) / sum(counts.values())
        assert np.isclose(weighted, paper["overall"][model], atol=0.001)   # the table is the paper's, whole


def test_resume_trains_only_the_expert_seed_pairs_without_metrics(tmp_path, monkeypatch, capsys):
    work = tmp_path / "run"
    work.mkdir()
    params = yaml.safe_load((real_data.REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    real_data.write_params(work, "params.yaml", params)
    run = {"datasets": ["olid"], "fields": ["abuse_hate", "offensive", "target_type"], "seconds": {}, "epochs": 2,
           "experts": {"single abuse_hate": ["abuse_hate"]}}
    (work / real_data.RUN_FILE).write_text(json.dumps(run), encoding="utf-8")
    finished = work / real_data.expert_folder("single offensive", 0)
    finished.mkdir(parents=True)
    (finished / "metrics.json").write_text("{}", encoding="utf-8")
    trained = []

    def fake_stages(work_, names, console, params_file="params.yaml"):
        trained.append(params_file)
        return {"train_text": 1.0}
    monkeypatch.setattr(real_data, "run_stages", fake_stages)
    monkeypatch.setattr(real_data, "report", lambda work_, console: json.loads((work_ / "run.json").read_text()))
    args = ["--work-dir", str(work), "--resume", "--seeds", "0", "1", "--only", "single offensive", "multi-head"]
    out = real_data.main(args)
    assert trained == ["params_multi_head_seed0.yaml", "params_single_offensive_seed1.yaml",
                       "params_multi_head_seed1.yaml"]
    written = yaml.safe_load((work / "params_multi_head_seed1.yaml").read_text(encoding="utf-8"))
    assert written["train"]["seed"] == 1 and written["train"]["tasks"] == run["fields"]
    assert written["train"]["epochs"] == 2 and written["text"]["max_length"] == 128    # the earlier run's, defaults
    assert written["text"]["metrics"] == "Step_4/multi_head/seed1/metrics.json"
    assert out["seeds"] == [0, 1] and set(out["experts"]) == {"single abuse_hate", "single offensive", "multi-head"}
    assert set(out["seconds"]) == {"train multi-head seed 0", "train single offensive seed 1",
                                   "train multi-head seed 1", "total (resume 1)"}
    trained.clear()
    capsys.readouterr()
    real_data.main(["--work-dir", str(work), "--resume", "--only", "single abuse_hate", "--limit", "50"])
    assert trained == ["params_single_abuse_hate_seed0.yaml", "params_single_abuse_hate_seed1.yaml"]  # its seeds
    assert "ignored on --resume (the data are the earlier run's): --limit" in capsys.readouterr().out
    run_seconds = json.loads((work / real_data.RUN_FILE).read_text())["seconds"]
    assert {"total (resume 1)", "total (resume 2)"} <= set(run_seconds)
    with pytest.raises(SystemExit, match="earlier run has --epochs 2, not 3"):
        real_data.main(args + ["--epochs", "3"])           # seeds of one table share their settings
    with pytest.raises(SystemExit, match="run.json not found"):
        real_data.main(["--work-dir", str(tmp_path / "empty"), "--resume"])


def test_a_run_from_before_seeds_is_named_not_reported_empty(tmp_path):
    (tmp_path / real_data.RUN_FILE).write_text(json.dumps({"fields": ["abuse_hate"], "experts": {
        "multi-head": ["abuse_hate"]}}), encoding="utf-8")
    (tmp_path / "Step_4" / "multi_head").mkdir(parents=True)
    (tmp_path / "Step_4" / "multi_head" / "metrics.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit, match="multi-head: Step_4/<expert>/ of a run made before --seeds"):
        real_data.report(tmp_path, None)


def test_a_release_with_images_is_read_in_place_and_its_folder_allowed_for_pack(real_samples, tmp_path):
    found = real_data.discover(real_samples, {})
    if "memotion1" not in found or real_data.in_place_folder("memotion1", found["memotion1"]) is None:
        pytest.skip("Memotion 1 images not in the real samples")
    folder = str(real_data.in_place_folder("memotion1", found["memotion1"]))
    assert folder.endswith("memotion_dataset_7k") and "olid" not in real_data.IN_PLACE
    repo = yaml.safe_load((real_data.REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params = real_data.data_params(repo, tmp_path, ["memotion1", "olid"], None, {"memotion1": folder})
    assert params["ingest"]["datasets"] == {"memotion1": folder, "olid": "release/olid"}
    assert params["releases"]["image_dirs"] == [str(tmp_path / "release"), folder]
    assert params["releases"]["official"]["memotion1"] == {"train": "carve"}     # val and test from imaged memes
    tasks = real_data.image_tasks(["abuse_hate", "offensive", "target_type"], ["memotion1"])
    assert tasks[:2] == ["abuse_hate", "offensive"] and {"motivational", "sentiment", "humour"} <= set(tasks)
    assert "shaming" not in tasks                                             # MAMI's: no MAMI images here


def image_predictions(labels, signal: float, seed: int, dataset: str = "memotion1") -> dict:
    rng = np.random.default_rng(seed)
    probs = np.clip(0.5 + signal * (np.asarray(labels) - 0.5) + rng.normal(0, 0.2, len(labels)), 0.01, 0.99)
    return {"offensive": {f"m{i}": (dataset, int(y), float(p)) for i, (y, p) in enumerate(zip(labels, probs))}}


def test_modality_rows_tell_an_image_signal_from_chance_and_compare_fusion_with_the_better_expert():
    labels = np.random.default_rng(0).integers(0, 2, 400)
    predictions = {"multi-head": [image_predictions(labels, 0.0, s) for s in (1, 2)],
                   "image multi-head": [image_predictions(labels, 0.3, s) for s in (3, 4)],
                   "image baseline": [image_predictions(labels, 0.1, 5)],
                   "fusion": [image_predictions(labels, 0.3, s) for s in (6, 7)]}
    rows = scores.modality_rows(predictions, ["offensive"], ["memotion1"], "multi-head", "image multi-head",
                                resamples=200)
    by = {(r["metric"], r["comparison"]): r for r in rows}
    chance = by[("auroc", "image multi-head - chance")]
    assert chance["95% CI low"] > 0 and chance["examples"] == 400
    better = by[("auroc", "fusion - better expert (image multi-head)")]
    assert better["95% CI low"] < better["difference"] < better["95% CI high"]
    assert by[("auroc", "image multi-head - image baseline")]["difference"] > 0
    assert ("f1_macro", "image multi-head - chance") not in by      # guessing has no constant F1
    assert not scores.modality_rows(predictions, ["offensive"], ["olid"], "multi-head", "image multi-head")
    image_only = scores.modality_rows({k: v for k, v in predictions.items() if k not in ("multi-head", "fusion")},
                                      ["offensive"], ["memotion1"], None, "image multi-head", resamples=200)
    assert {r["comparison"] for r in image_only} == {"image multi-head - chance", "image multi-head - image baseline"}


def test_image_baseline_learns_the_synthetic_images_colour_cue_per_dataset(tmp_path):
    written = write_shards(tmp_path, {"train": 60, "test": 30}, nulls=0, textonly_share=0.0)
    vision = yaml.safe_load((real_data.REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))["vision"]
    out = scores.image_baseline(tmp_path, ["abuse_hate"], vision, tmp_path / "features")
    by_dataset = out["test"]["abuse_hate"]["by_dataset"]
    assert sum(v["support"] for v in by_dataset.values()) == len(written["test"])
    assert all(v["auroc"] > 0.8 for v in by_dataset.values() if v["support"] >= 10)
    cache = scores.feature_cache(tmp_path / "features", vision)
    assert sorted(p.name for p in cache.iterdir()) == ["test.npz", "train.npz"]
    cached = scores.pooled_features(tmp_path, "test", vision, cache / "test.npz")[1]
    assert cached.shape == (len(written["test"]), 1280)
    # another backbone (model, weights or input size) never reads these features: same ids, other numbers
    assert scores.feature_cache(tmp_path / "features", dict(vision)) == cache
    for key, value in (("model", "resnet18"), ("weights", "imagenet"), ("image_size", 224)):
        assert scores.feature_cache(tmp_path / "features", {**vision, key: value}) != cache


def test_the_bootstraps_scores_equal_sklearns_on_resampled_data_with_ties():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(3)
    for size in (5, 40, 700):
        labels = rng.integers(0, 2, size)
        labels[:2] = [0, 1]
        probs = np.round(rng.random(size), 1)                   # ties, and values exactly 0.5
        assert np.isclose(scores.SCORES["auroc"](labels, probs), roc_auc_score(labels, probs), atol=1e-12)
        assert np.isclose(scores.SCORES["f1_macro"](labels, probs), training.binary_f1_macro(labels, probs),
                          atol=1e-12)
    assert scores.SCORES["f1_macro"](np.zeros(4, int), np.zeros(4)) == training.binary_f1_macro(np.zeros(4, int),
                                                                                                  np.zeros(4))
