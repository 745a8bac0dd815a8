"""CI runs exactly the README's test command (.ci/run), and that command's lint step passes."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    quick_start = (REPO / "README.md").read_text(encoding="utf-8").split("## Quick start")[1].split("```")[1]
    lines = [line.split("#")[0].strip() for line in quick_start.splitlines() if "requirements-dev.txt" in line]
    assert len(lines) == 1, quick_start
    return lines[0]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == readme_test_command()
    assert "ruff check ." in ci[-1] and ci[-1].endswith("python -m pytest")


def test_the_linter_ci_runs_is_pinned_in_requirements_dev():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.M))
    assert "ruff" in pins


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by requirements-dev.txt")
def test_ruff_finds_nothing():
    result = subprocess.run(["ruff", "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]
