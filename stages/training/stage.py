"""The shell both expert stages share, so that train_text / train_vision hold only what is
particular to their model and read top-down:

    main()          parse_stage: params + command line -> configs; stopped_note: Ctrl-C -> Interrupted
      train_<expert>(paths, train, cfg)    read_data, ready_torch, build its Expert
        trainer.train_expert(expert, data, paths, train)    -> Trainer.train, outputs.final_pass
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

from stages.console import setup_logging
from stages.config import parse, unless_given
from stages.errors import Interrupted
from stages.threads import pin_torch_threads
from stages.training.config import ExpertPaths, TrainConfig, stage_parts


def add_resume_flag(parser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last scratch checkpoint (default: start over, as dvc repro does)")


def parse_stage(name: str, config_cls, description: str, argv=None) -> tuple[TrainConfig, Any, ExpertPaths, bool]:
    """(train, the expert's own config, its paths, --resume) from params groups `train` + `name` and
    the command line; logging set up."""
    (train, expert_cfg, paths), args = parse(f"train_{name}", description, stage_parts(name, config_cls), argv,
                                             extra=add_resume_flag)
    setup_logging(args.verbose)
    quiet_libraries(args.verbose)
    return train, expert_cfg, unless_given(paths, args, name, "metrics", "report"), args.resume


@contextlib.contextmanager
def stopped_note(paths: ExpertPaths, stage: str) -> Iterator[None]:
    """Ctrl-C -> Interrupted, saying which checkpoint --resume would continue from (stages.cli.run prints it)."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(resume_note(paths.run_dir(stage) / "checkpoints")) from None


def resume_note(checkpoints: Path) -> str:
    from stages.training.trainer import last_checkpoint

    found = last_checkpoint(checkpoints)
    return f"; checkpoint kept for --resume: {found}" if found else f"; no checkpoint yet in {checkpoints}"


def ready_torch(seed: int) -> None:
    """torch's thread count pinned to the policy's, then the seeds: before any model is built (heads
    are initialised from the global RNG)."""
    import torch
    from transformers import enable_full_determinism, set_seed

    pin_torch_threads()
    if torch.cuda.is_available():
        set_seed(seed)
    else:
        enable_full_determinism(seed)  # also torch.use_deterministic_algorithms(True)


def quiet_libraries(verbose: bool) -> None:
    """Silence advisory warnings and progress bars of transformers/torch unless --verbose."""
    import transformers

    if verbose:
        transformers.logging.set_verbosity_info()
        return
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("dvclive").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
