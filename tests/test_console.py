"""stages/console.py: progress in a log (not a terminal) is plain lines with rate and ETA, at most
one per interval plus one at the end; a disabled progress prints nothing; the summary table."""
from __future__ import annotations

import io
import re

from rich.console import Console

from stages.console import Progress, summary


def log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=80), out    # a file: not a terminal


def test_log_lines_carry_count_rate_and_eta():
    console, out = log_console()
    with Progress("pack", 40, console=console, every=0.0) as progress:
        for _ in range(40):
            progress.advance()
    lines = out.getvalue().splitlines()
    assert len(lines) == 41            # every=0: one line per update, plus the closing one
    assert re.fullmatch(r"pack: 1/40 examples \(2%\), [\d.]+ examples/s, ETA \d+:\d\d:\d\d", lines[0])
    assert lines[-1].startswith("pack: 40/40 examples (100%), ") and lines[-1].endswith("ETA 0:00:00")


def test_lines_are_throttled_to_the_interval_and_labels_change():
    console, out = log_console()
    with Progress("train epoch 1", 1000, console=console, every=3600.0) as progress:
        for step in range(1, 11):
            progress.update(step * 100, label=f"train epoch {1 + step // 5}")
        progress.note("epoch 1: val macro-F1 0.5")
    lines = out.getvalue().splitlines()
    assert lines[0] == "epoch 1: val macro-F1 0.5"
    assert len(lines) == 2 and lines[1].startswith("train epoch 3: 1000/1000 examples (100%)")


def test_unknown_total_and_disabled():
    console, out = log_console()
    with Progress("hateful_memes", None, unit="records", console=console, every=0.0) as progress:
        progress.advance(5)
    assert re.fullmatch(r"hateful_memes: 5 records, [\d.]+ records/s", out.getvalue().splitlines()[-1])
    console, out = log_console()
    with Progress("quiet", 3, console=console, enabled=False, every=0.0) as progress:
        progress.advance()
        progress.note("nothing")
    assert out.getvalue() == ""


def test_summary_table_aligns_labels_left_and_numbers_right():
    console, out = log_console()
    table = summary("Step 9", ("dataset", "split", "examples"), [("olid", "train", 12), ("", "test", 3)],
                    labels=2, caption="a note", console=console)
    lines = out.getvalue().splitlines()
    assert lines[0].strip() == "Step 9" and lines[-1].strip() == "a note"
    assert "│ olid    │ train │       12 │" in lines and "│         │ test  │        3 │" in lines
    assert table.row_count == 2
