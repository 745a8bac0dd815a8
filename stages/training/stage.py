"""The shell both expert stages share: `train_expert` (config in, metrics out) and `stage_main`
(params + command line -> `train_expert` -> summary), so train_text / train_vision hold only what
is particular to their model."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable

import torch

from stages import heads
from stages.console import setup_logging
from stages.config import parse, unless_given
from stages.errors import Interrupted
from stages.threads import pin_torch_threads
from stages.training.config import ExpertPaths, TrainConfig, hub_local_only, stage_parts
from stages.training.data import read_diagnostic, read_splits
from stages.training.outputs import print_summary
from stages.training.trainer import last_checkpoint, run_expert


def train_expert(build_expert: Callable, shard_kinds: tuple[str, ...], paths: ExpertPaths, train: TrainConfig,
                 expert_cfg, resume: bool = False) -> dict | None:
    """A training stage: count splits, build the expert, train, write outputs (metrics on rank 0)."""
    target = train.target()
    splits = read_splits(paths.shards, shard_kinds, target)
    pin_torch_threads()
    diagnostic_info, skipped = read_diagnostic(paths.shards, shard_kinds, target)
    seed_everything(train.seed)
    expert = build_expert(expert_cfg, train)
    if train.multi_head:
        setattr(expert.model.config, heads.CONFIG_KEY, target.to_config())   # saved in config.json
    return run_expert(expert, splits, paths, train, resume=resume,
                      diagnostic_split=diagnostic_info, diagnostic_skipped=skipped)


def add_resume_flag(parser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last scratch checkpoint (default: start over, as dvc repro does)")


def stage_main(name: str, config_cls, train_fn: Callable, description: str, argv=None) -> None:
    """The `main()` of both stages: params groups `train` + `name`, then `train_fn(paths, train, cfg)`."""
    (train, expert_cfg, paths), args = parse(f"train_{name}", description, stage_parts(name, config_cls), argv,
                                             extra=add_resume_flag)
    paths = unless_given(paths, args, name, "metrics", "report")
    setup_logging(args.verbose)
    quiet_libraries(args.verbose)
    try:
        hub_local_only(expert_cfg.model, f"{name}.model")   # a missing hub model fails here, at once
        metrics = train_fn(paths, train, expert_cfg, resume=args.resume)
    except KeyboardInterrupt:   # stages.cli.run prints it, with what was kept
        raise Interrupted(resume_note(paths.run_dir(f"train_{name}") / "checkpoints")) from None
    if metrics is not None:
        print_summary(metrics, f"{name} expert")


def resume_note(checkpoints: Path) -> str:
    found = last_checkpoint(checkpoints)
    return f"; checkpoint kept for --resume: {found}" if found else f"; no checkpoint yet in {checkpoints}"


def seed_everything(seed: int) -> None:
    """Seeds before any model is built (heads are initialised from the global RNG)."""
    from transformers import enable_full_determinism, set_seed

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

