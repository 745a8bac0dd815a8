"""benchmarks/real_text.py's pieces (the full run is hand-run: real data, about an hour): which
release files reach a run, the TF-IDF baseline's per-dataset scores, and the result tables."""
from __future__ import annotations

import json

import numpy as np

from benchmarks import real_text
from stages.records import DIAGNOSTIC_SPLIT
from tests.test_training import write_shards


def test_official_releases_are_preferred_and_only_labelled_text_files_reach_the_run(real_samples, tmp_path):
    found = real_text.discover(real_samples, {})
    if "memotion1" in found:
        assert found["memotion1"].name == "memotion1_official"
    copied = {}
    for name in ("hateful_memes", "memotion1"):
        if name in found:
            real_text.copy_release(name, found[name], tmp_path / name)
            copied[name] = sorted(p.name for p in (tmp_path / name).rglob("*") if p.is_file())
    if "hateful_memes" in copied:     # dev_unseen repeats 400 dev_seen memes; test_unseen has no labels
        assert copied["hateful_memes"] == ["dev_seen.jsonl", "train.jsonl"]
    if "memotion1" in copied:         # 2000_testdata.csv: no gold labels
        assert copied["memotion1"] == ["labels.csv"]
    assert real_text.discover(real_samples, {"olid": tmp_path / "hateful_memes"})["olid"] == tmp_path / "hateful_memes"


def test_tfidf_baseline_scores_each_dataset_on_its_own_labelled_test_examples(tmp_path):
    written = write_shards(tmp_path, {"train": 60, "test": 30, DIAGNOSTIC_SPLIT: 10}, nulls=3)
    out = real_text.tfidf_baseline(tmp_path, ["abuse_hate", "offensive"])
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
    rows = real_text.result_rows({"single abuse_hate": single, "multi-head": multi}, ["abuse_hate", "offensive"])
    systems = [row["system"] for row in rows]
    assert systems[:3] == ["single abuse_hate", "multi-head", "train-majority class"]
    assert systems[3].startswith("published: Text BERT")
    assert rows[2]["f1_macro"] == 0.34 and rows[3]["auroc"] == 0.6465
    table = real_text.markdown(rows, [])
    assert table.splitlines()[0].startswith("| dataset | field | system | f1_macro")
    assert "| hateful_memes | abuse_hate | multi-head | 0.550 | 0.600 | 0.570 | 500 |" in table


def test_hatecheck_reference_numbers_cover_every_functionality_of_the_real_suite(real_dataset):
    import csv
    with open(real_dataset("hatecheck") / "test_suite_cases.csv", encoding="utf-8", newline="") as f:
        counts: dict[str, int] = {}
        for row in csv.DictReader(f):
            counts[row["functionality"]] = counts.get(row["functionality"], 0) + 1
    paper = json.loads(real_text.HATECHECK_PAPER.read_text(encoding="utf-8"))
    for model, accuracy in paper["models"].items():
        assert set(accuracy) == set(counts)
        weighted = sum(accuracy[f] * n for f, n in counts.items()) / sum(counts.values())
        assert np.isclose(weighted, paper["overall"][model], atol=0.001)   # the table is the paper's, whole
