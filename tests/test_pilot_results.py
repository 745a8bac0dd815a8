"""The committed results of the last `dvc repro` on the default pilot (kept in git: the headline DVC
metrics and DVCLive's plot data; the full reports are DVC-cached outputs).

These files are what `dvc metrics diff` compares; they must be the outputs recorded in dvc.lock
and show both experts beating the train-majority baseline on val (issue: honest metrics).
"""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from stages.common import REPO_ROOT, dvc_yaml

LOCK = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
METRICS = ["Step_2/metrics/ingest.json", "Step_3/metrics/split.json", "Step_3/metrics/pack.json",
           "Step_4/metrics/text.json", "Step_4/metrics/vision.json"]
REPORTS = ["Step_2/ingest_report.json", "Step_3/split_report.json", "Step_3/stats.json",
           "Step_4/reports/text.json", "Step_4/reports/vision.json"]   # DVC-cached, not in git


def locked_md5(path: str) -> str:
    for stage in LOCK["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return out["md5"]
    raise AssertionError(f"{path} is not an output in dvc.lock")


@pytest.mark.parametrize("path", METRICS)
def test_committed_metrics_are_the_locked_outputs(path):
    assert hashlib.md5((REPO_ROOT / path).read_bytes()).hexdigest() == locked_md5(path)


@pytest.mark.parametrize("expert", ["text", "vision"])
def test_pilot_experts_beat_the_majority_baseline_on_val(expert):
    metrics = json.loads((REPO_ROOT / f"Step_4/metrics/{expert}.json").read_text())
    for split in ("val", "test"):
        assert metrics[split]["support"] > 30
    assert metrics["val"]["f1_macro"] > metrics["val"]["majority_baseline_f1_macro"] + 0.1


def test_pack_stats_of_the_pilot_are_clean():
    pack = json.loads((REPO_ROOT / "Step_3/metrics/pack.json").read_text())
    assert pack["failed_examples"] == 0 and pack["failure_rate"] == 0
    assert pack["packed_examples"] + pack["excluded_examples"] == pack["total_examples"]


def test_pilot_diagnostic_split_is_packed_apart_and_scored_per_functionality():
    """The pilot's HateCheck miniature: packed to its own split, scored by the text expert per
    functionality (DVCLive's bar plot data), skipped by the vision expert (image shards only)."""
    pack = json.loads((REPO_ROOT / "Step_3/metrics/pack.json").read_text())
    assert set(pack["splits"]) == {"train", "val", "test", "diagnostic"}
    assert pack["splits"]["diagnostic"]["examples"] == 60
    text = json.loads((REPO_ROOT / "Step_4/metrics/text.json").read_text())["diagnostic"]
    assert text["cases"] == 60 and 0 <= text["accuracy"] <= 1
    rows = json.loads((REPO_ROOT / "Step_4/live/text/plots/custom/diagnostic_functionality.json").read_text())
    assert len(rows) == 6
    assert "diagnostic" not in json.loads((REPO_ROOT / "Step_4/metrics/vision.json").read_text())


def leaf_count(tree: dict) -> int:
    return sum(leaf_count(v) if isinstance(v, dict) else 1 for v in tree.values())


DECLARED_METRICS = [next(iter(entry)) for stage in dvc_yaml()["stages"]
                    .values() for entry in stage.get("metrics", [])]


def test_the_metrics_files_are_the_declared_ones():
    assert set(METRICS) <= set(DECLARED_METRICS) and not set(REPORTS) & set(DECLARED_METRICS)


@pytest.mark.parametrize("path", DECLARED_METRICS)
def test_every_metrics_file_dvc_shows_is_small(path):
    """`dvc metrics show` / `dvc exp show`: the headline numbers only (the reports hold the rest)."""
    assert leaf_count(json.loads((REPO_ROOT / path).read_text())) <= 40

def readme_pilot_table() -> dict[str, list[str]]:
    """The README's quick-start table: expert -> its cells (between the pilot-results markers)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("<!-- pilot-results -->")[1].split("<!-- /pilot-results -->")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]
    return {row[0].split()[0]: row[1:] for row in rows}


def test_readme_pilot_table_is_the_committed_metrics():
    table = readme_pilot_table()
    assert sorted(table) == ["text", "vision"]
    for expert, cells in table.items():
        test = json.loads((REPO_ROOT / f"Step_4/metrics/{expert}.json").read_text())["test"]
        expected = [f"{test[key]:.3f}" for key in ("f1_macro", "auroc", "accuracy", "majority_baseline_f1_macro")]
        assert cells == expected + [str(test["support"])], expert
