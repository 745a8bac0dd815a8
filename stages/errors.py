"""Everything a user can cause, one class per kind, one exit code per kind.

A stage raises the kind (or a module's subclass of it, which keeps attributes such as file, line,
field) and lets it propagate; `stages.cli.run` prints it as the one line `<stage>: <message>` on
stderr and exits with the kind's code. No stage converts errors into SystemExit itself.

ConfigError and InputError also derive from ValueError, so code and tests that catch ValueError
(the dataclass checks in stages/config.py, the readers' callers) keep working.
Internal conditions that a stage counts and skips (e.g. stages.images.ImageError) are not UserErrors.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (params, inputs, outputs) or caused (a stop); never a bug."""
    exit_code = 1


class ConfigError(UserError, ValueError):
    """A params.yaml or command-line value that cannot configure the stage; the message names the key."""
    exit_code = 2


class InputError(UserError, ValueError):
    """An input breaks its contract (release files, Step 2 files, taxonomy, splits, shards,
    predictions, model sources); the message names the file and where in it."""
    exit_code = 3


class OutputError(UserError):
    """An output a stage will not replace (not its own, or holding an input) or cannot write
    (disk full, read-only); the message names the path."""
    exit_code = 4


class GateError(UserError):
    """A quality gate stopped the stage (e.g. pack's failure rate); nothing was written."""
    exit_code = 5


class Interrupted(UserError):
    """Ctrl-C or SIGTERM: atomic outputs have been rolled back. `note` may tell what was kept
    (e.g. a training checkpoint for --resume)."""
    exit_code = 130   # 128 + SIGINT, as shells report a Ctrl-C

    def __init__(self, note: str = ""):
        self.note = note
        super().__init__(f"interrupted; no outputs written{note}")
