"""What every entry point does first: `python -m stages.<name>`, the benchmarks, the test session.

torch, numpy and tokenizers read their thread settings once, when they load, so the CPU thread
policy (stages/threads.py) must be in the environment before any of them is imported. Each
runnable module therefore opens, above its other imports, with

    if __name__ == "__main__":   # an entry point: the thread policy before numpy/torch load
        from stages.cli import start
        start()

and importing that module from elsewhere (a test, a notebook, another stage) changes nothing.
tests/test_threads.py checks that every runnable module does so. It closes with

    if __name__ == "__main__":
        run("<stage>", main)

which turns what a user caused (stages/errors.py) into one line on stderr and its kind's exit code.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

from stages.errors import Interrupted, UserError
from stages.threads import apply_thread_policy


def start() -> dict[str, str]:
    """Prepare this process to run a stage or benchmark; returns the variables the policy set."""
    return apply_thread_policy()


def run(stage: str, main: Callable[[Sequence[str] | None], Any], argv: Sequence[str] | None = None) -> Any:
    """`main(argv)`; a UserError (Ctrl-C is Interrupted) becomes the one line `<stage>: <message>`
    on stderr and SystemExit with the kind's code. Anything else is a bug and keeps its traceback."""
    try:
        try:
            return main(argv)
        except KeyboardInterrupt:
            raise Interrupted() from None
    except UserError as err:
        print(f"{stage}: {err}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None


def show() -> None:
    """`python -m stages.cli`: the settings an entry point gets on this machine, as torch sees them
    (threads, instruction set, how waiting threads wait)."""
    import os

    start()
    import torch

    print(torch.get_num_threads(), torch.backends.cpu.get_cpu_capability(), os.environ.get("OMP_WAIT_POLICY", "-"),
          os.environ.get("GOMP_SPINCOUNT", "-"))


if __name__ == "__main__":
    show()
