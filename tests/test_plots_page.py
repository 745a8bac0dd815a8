"""`dvc plots show` writes a page that renders offline: vega, vega-lite and vega-embed inlined from
the vl-convert-python package (stages/plots_page.py), no CDN script; `.dvc/config` points at it."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stages import plots_page
from stages.common import REPO_ROOT

# What a page may still contain as text without loading it: XML namespaces, the Vega-Lite schema id
# (vega-embed reads it to pick the mode, never fetches it), the "Open in Vega Editor" menu link and
# a code comment inside the bundle.
INERT_URLS = re.compile(r"https?://(www\.w3\.org/|vega\.github\.io/schema/|vega\.github\.io/editor/|"
                        r"github\.com/vega/vega-lite/issues/)")
LOADS = re.compile(r"""(?:\bsrc\s*=|\bhref\s*=|\burl\(|@import|\bimport\s*\(?|\bfetch\s*\()\s*["']?\s*(?:https?:)?//""",
                   re.I)


def remote_references(html: str) -> list[str]:
    """Every place the page would load something from the network, and every URL not known inert."""
    found = [m.group(0) for m in LOADS.finditer(html)]
    return found + [url for url in re.findall(r"https?://[^\s\"'<>)]+", html) if not INERT_URLS.match(url)]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return plots_page.write_template(tmp_path_factory.mktemp("template") / "page.html")


def test_template_inlines_the_libraries_and_loads_nothing(template):
    html = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in html and "{scripts}" not in html   # DVC puts its CDN <script> tags at {scripts}
    assert "window.vegaEmbed=" in html and "window.vegaLite=" in html and "window.vega=" in html
    assert "<script src" not in html and "<link" not in html
    assert remote_references(html) == []


def test_the_check_finds_a_cdn_script():
    assert remote_references('<script src="https://cdn.jsdelivr.net/npm/vega@5.20.2"></script>') != []
    assert remote_references('<link href="//fonts.example/x.css">') != []


def test_repo_config_points_dvc_plots_at_the_template():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / ".dvc" / "config")
    assert (REPO_ROOT / ".dvc" / config["plots"]["html_template"]) == plots_page.TEMPLATE


def test_dvc_plots_show_writes_an_offline_page(template, tmp_path):
    """A small DVC project with one curve: the page holds the chart's data and no remote reference."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "config", "plots.html_template", str(template))
    (repo / "loss.tsv").write_text("step\tloss\n0\t0.9\n1\t0.5\n2\t0.3\n")
    (repo / "dvc.yaml").write_text("plots:\n  - loss.tsv:\n      x: step\n      y: loss\n")
    run(sys.executable, "-m", "dvc", "plots", "show", "-o", "out")
    html = (repo / "out" / "index.html").read_text(encoding="utf-8")
    assert re.search(r'"loss": "?0\.5', html) and "vegaEmbed('#loss_tsv'" in html.replace('"', "'")
    assert remote_references(html) == []
