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
