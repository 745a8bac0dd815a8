"""The page `dvc plots show` / `dvc plots diff` write, made to render offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so it is blank on a machine
without internet. `.dvc/config` sets `plots.html_template` to .dvc/plots_page.html; this writes that
template with the three libraries inlined from the vl-convert-python package (requirements.txt):

    python -m stages.plots_page          # once after `pip install -r requirements.txt`

The template leaves out DVC's `{scripts}` placeholder (where DVC would put its CDN <script> tags);
the page references no remote script, style or font.
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import argparse
from pathlib import Path

from stages.common import REPO_ROOT, atomic_file

TEMPLATE = REPO_ROOT / ".dvc" / "plots_page.html"   # plots.html_template in .dvc/config (relative to .dvc)
VEGA_LITE_VERSION = "5.20"   # DVC 3.67's plot templates are Vega-Lite v5 specs
PAGE_HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script type="text/javascript">
"""
PAGE_TAIL = """
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def javascript_bundle() -> str:
    """vega, vega-lite and vega-embed in one classic script (they land on `window`)."""
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    if "</script" in bundle.lower():
        raise ValueError("the vl-convert bundle holds '</script'; it cannot be inlined in a page")
    return bundle


def page_template() -> str:
    return PAGE_HEAD + javascript_bundle() + PAGE_TAIL


def write_template(path: Path = TEMPLATE) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(page_template(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.plots_page", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TEMPLATE, help=f"the template to write (default {TEMPLATE})")
    args = parser.parse_args(argv)
    from rich.console import Console

    written = write_template(args.out)
    Console(stderr=True).print(f"offline plots template -> {written} ({written.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    from stages import cli
    cli.run("plots_page", main)
