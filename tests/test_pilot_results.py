"""The committed results of the last `dvc repro` on the default pilot (kept in git: DVC metrics and reports).

These files are what `dvc metrics diff` compares; they must be the outputs recorded in dvc.lock
and show both experts beating the train-majority baseline on val (issue: honest metrics).
"""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from stages.common import REPO_ROOT

LOCK = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
METRICS = ["Step_2/metrics/ingest.json", "Step_3/metrics/split.json", "Step_3/metrics/pack.json",
           "Step_4/metrics/text.json", "Step_4/metrics/vision.json"]
REPORTS = ["Step_2/ingest_report.json", "Step_3/split_report.json", "Step_3/stats.json",
           "Step_4/reports/text.json", "Step_4/reports/vision.json"]


def locked_md5(path: str) -> str:
    for stage in LOCK["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return out["md5"]
    raise AssertionError(f"{path} is not an output in dvc.lock")


@pytest.mark.parametrize("path", METRICS + REPORTS)
def test_committed_metrics_are_the_locked_outputs(path):
    assert hashlib.md5((REPO_ROOT / path).read_bytes()).hexdigest() == locked_md5(path)


@pytest.mark.parametrize("expert", ["text", "vision"])
def test_pilot_experts_beat_the_majority_baseline_on_val(expert):
    metrics = json.loads((REPO_ROOT / f"Step_4/reports/{expert}.json").read_text())
    assert metrics["pretrained"] is True and metrics["task"] == "abuse_hate"
    for split in ("val", "test"):
        assert metrics[split]["support"] > 30
    assert metrics["val"]["f1_macro"] > metrics["val"]["majority_baseline_f1_macro"] + 0.1


def test_pack_stats_of_the_pilot_are_clean():
    stats = json.loads((REPO_ROOT / "Step_3/stats.json").read_text())
    assert stats["failed_examples"] == 0 and stats["failure_rate"] == 0
    assert stats["packed_examples"] + stats["excluded_examples"] == stats["total_examples"]


def test_pilot_diagnostic_split_is_packed_apart_and_scored_per_functionality():
    """The pilot's HateCheck miniature: packed to its own split, scored by the text expert per
    functionality, skipped (and said so) by the vision expert."""
    stats = json.loads((REPO_ROOT / "Step_3/stats.json").read_text())
    assert set(stats["splits"]) == {"train", "val", "test"}
    assert stats["diagnostic"]["datasets"] == {"hatecheck": 60} and stats["diagnostic"]["text_only"] == 60
    text = json.loads((REPO_ROOT / "Step_4/reports/text.json").read_text())["diagnostic"]
    assert text["cases"] == 60 and len(text["by_functionality"]) == 6
    assert sum(f["cases"] for f in text["by_functionality"].values()) == 60
    vision = json.loads((REPO_ROOT / "Step_4/reports/vision.json").read_text())["diagnostic"]
    assert vision == {"skipped": "text-only suite(s) (hatecheck): this expert reads image shards only"}


def leaf_count(tree: dict) -> int:
    return sum(leaf_count(v) if isinstance(v, dict) else 1 for v in tree.values())


DECLARED_METRICS = [next(iter(entry)) for stage in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].values()
                    for entry in stage.get("metrics", [])]


def test_the_metrics_files_are_the_declared_ones():
    assert set(METRICS) <= set(DECLARED_METRICS) and not set(REPORTS) & set(DECLARED_METRICS)


@pytest.mark.parametrize("path", DECLARED_METRICS)
def test_every_metrics_file_dvc_shows_is_small(path):
    """`dvc metrics show` / `dvc exp show`: the headline numbers only (the reports hold the rest)."""
    assert leaf_count(json.loads((REPO_ROOT / path).read_text())) <= 40
