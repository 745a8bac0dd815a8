"""Shared fixtures. Real dataset files live in ../shared/real_samples (never copied here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from stages.cli import start

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_SAMPLES = REPO_ROOT.parent / "shared" / "real_samples"


def pytest_configure(config):
    """The test session is an entry point: the CPU thread policy before any test module loads torch."""
    start()


@pytest.fixture
def real_samples() -> Path:
    """The folder of real label/text files; tests using it skip cleanly when it is absent."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REAL_SAMPLES}")
    return REAL_SAMPLES


@pytest.fixture
def real_dataset(real_samples):
    """real_dataset('olid') -> Path, skipping when that dataset's folder is absent."""
    def get(name: str) -> Path:
        folder = real_samples / name
        if not folder.is_dir():
            pytest.skip(f"no real samples for {name}")
        return folder
    return get


def ingested_pilot(root: Path, datasets: tuple[str, ...], examples_per_dataset: int):
    """The pilot's releases of `datasets` through ingest into `root`: (manifest, ocr, the split config
    from params.yaml reading them, one worker)."""
    from stages.common import load_params
    from stages.config import build
    from stages.ingest import ingest
    from stages.pilot import PilotConfig, write_pilot
    from stages.split import PARTS

    pilot = write_pilot(PilotConfig(out=root / "pilot", examples_per_dataset=examples_per_dataset, datasets=datasets))
    manifest, ocr = root / "manifest.jsonl", root / "ocr.jsonl"
    ingest({name: pilot.out / name for name in datasets}, manifest, ocr, root=root,
           report_out=root / "ingest_report.json", metrics_out=root / "metrics" / "ingest.json")
    split_config, _ = build(PARTS, load_params(None, REPO_ROOT / "params.yaml"),
                            overrides={"split.workers": 1, "split.manifest": manifest, "split.ocr": ocr})
    return manifest, ocr, split_config
