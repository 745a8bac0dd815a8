"""The expert stages' configuration: the shared `train` group, an expert's paths, the label names
of its classifier and where its model comes from (hub id, local folder or `pip:<package>`)."""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from stages import heads
from stages.config import Part, check_fields
from stages.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TASKS = ("abuse_hate", "offensive")
LEARNING_RATE_LIMITS = {"above": 0.0, "max": 1.0}   # > 0; above 1 is a typo (5e5 for 5e-5), not a learning rate


class TrainingInputError(InputError):
    """Bad shards, params or model sources; the message names file / example / value."""


@dataclass(frozen=True)
class TrainConfig:
    """The shared `train` params group: `dvc exp run -S train.epochs=3` changes both experts."""
    task: str | None = None  # shortcut for tasks: [task] (older experiments)
    tasks: tuple[str, ...] | None = None  # label fields learned, one head each (null: [abuse_hate])
    primary: str | None = None  # its val macro-F1 picks the epoch; null: abuse_hate if learned, else the first
    head_weights: dict[str, float] = field(default_factory=dict)  # field -> loss weight (default 1)
    target_group_level: str = "name"  # target_group head over the taxonomy's names | category
    label_taxonomy: str | None = field(  # head layouts of the fields (multi-head only; dvc.yaml's cmd passes it)
        default=None, metadata={"cli_only": True})
    epochs: int = field(default=4, metadata={"min": 1})  # passes over the train split
    batch_size: int = field(default=16, metadata={"min": 1})  # per process
    learning_rate: float = field(  # an expert's own learning_rate, when set, wins; in (0, 1]
        default=5e-5, metadata=LEARNING_RATE_LIMITS)
    warmup_ratio: float = field(  # share of all steps with a linear warmup, in [0, 1)
        default=0.1, metadata={"min": 0.0, "below": 1.0})
    weight_decay: float = field(  # AdamW weight decay, in [0, 1]
        default=0.01, metadata={"min": 0.0, "max": 1.0})
    seed: int = 0                  # model init, data order and augmentation
    class_weighting: bool = True   # cross-entropy weighted by inverse train class frequency
    num_workers: int = field(  # DataLoader workers per process (the batch order does not depend on it)
        default=0, metadata={"min": 0})

    def __post_init__(self):
        check_fields(self, "train")
        self.resolve_tasks()   # field names are checked against the taxonomy when its layout is read

    def resolve_tasks(self) -> None:
        """tasks from `tasks` or the `task` shortcut (both given: they must agree), then primary."""
        tasks = None if self.tasks is None else tuple(self.tasks)
        if tasks is not None and self.task is not None and tasks != (self.task,):
            raise TrainingInputError(f"train.task={self.task!r} and train.tasks={list(tasks)} disagree: "
                                     "set only train.tasks")
        tasks = tasks or (self.task or "abuse_hate",)
        if len(set(tasks)) != len(tasks) or not all(isinstance(name, str) for name in tasks):
            raise TrainingInputError(f"train.tasks: {list(tasks)} must be distinct field names")
        primary = self.primary or ("abuse_hate" if "abuse_hate" in tasks else tasks[0])
        if primary not in tasks:
            raise TrainingInputError(f"train.primary: {primary!r} is not among train.tasks {list(tasks)}")
        unknown = sorted(set(self.head_weights) - set(tasks))
        if unknown or any(not isinstance(w, (int, float)) or not 0 <= w < math.inf for w in self.head_weights.values()):
            raise TrainingInputError(f"train.head_weights: {dict(self.head_weights)} must map fields of train.tasks "
                                     f"to weights >= 0 (not learned: {', '.join(unknown) or '-'})")
        if self.target_group_level not in heads.TARGET_GROUP_LEVELS:
            raise TrainingInputError(f"train.target_group_level: {self.target_group_level!r} is not one of "
                                     f"{', '.join(heads.TARGET_GROUP_LEVELS)}")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "primary", primary)
        object.__setattr__(self, "task", tasks[0] if len(tasks) == 1 else None)

    @property
    def multi_head(self) -> bool:
        """Several fields, or one that is not a unified binary field: the multi-head path (stages/heads.py).
        One binary field keeps the plain 2-class expert and today's metrics layout."""
        return len(self.tasks) > 1 or self.tasks[0] not in TASKS

    def layout(self) -> heads.HeadLayout:
        if self.label_taxonomy is None:
            raise TrainingInputError("--label-taxonomy is not given: a multi-head expert reads its heads from it")
        try:
            return heads.head_layout(self.tasks, self.label_taxonomy, self.target_group_level)
        except (OSError, ValueError) as err:
            raise TrainingInputError(str(err)) from err

    def target(self):
        """What the shards' json is read for: the task name (single task) or the head layout."""
        return self.layout() if self.multi_head else self.task

    def heads_layout(self) -> heads.HeadLayout | None:
        """The head layout on the multi-head path; None for a plain binary expert."""
        return self.layout() if self.multi_head else None


@dataclass(frozen=True)
class ExpertPaths:
    """Where an expert stage reads and writes: keys of its own params group (`text` / `vision`)."""
    shards: Path = field(  # packed shards (train/ val/ test/): pack's output_dir, dvc.yaml's cmd passes it
        metadata={"cli_only": True})
    out_model: Path       # the saved expert (save_pretrained)
    metrics: Path         # headline metrics JSON (the DVC metric: epochs, val/test scores)
    live_dir: Path        # DVCLive dir (curves for `dvc plots`)
    predictions: Path     # val/test predictions for Step 5
    scratch: Path         # holds <stage>-run/: checkpoints + the live dir while training (removed after success)
    trace_ids: Path | None = field(  # debug: write the train ids each rank/worker read, per epoch, to this folder
        default=None, metadata={"cli_only": True})
    report: Path | None = None  # the full metrics record (per dataset, head, functionality, group); null: none

    def run_dir(self, stage: str) -> Path:
        """The stage's own folder inside `scratch`: made fresh (unless --resume), removed alone."""
        return self.scratch / f"{stage}-run"


def stage_parts(name: str, config_cls) -> tuple[Part, ...]:
    """An expert stage's config: the shared `train` group, then its own group (settings + paths)."""
    return Part("train", TrainConfig), Part(name, config_cls), Part(name, ExpertPaths)


def label_names(task: str) -> tuple[str, str]:
    return (f"not_{task}", task)


def label_maps(task: str | TrainConfig) -> tuple[dict[int, str], dict[str, int]]:
    """The classifier's output names: a task's two classes, or every head's `<field>=<class>`."""
    if isinstance(task, TrainConfig):
        task = task.layout() if task.multi_head else task.task
    id2label = task.id2label() if isinstance(task, heads.HeadLayout) else dict(enumerate(label_names(task)))
    return id2label, {name: i for i, name in id2label.items()}


def resolve_pip_package(spec: str) -> Path:
    """`pip:<module>` -> the installed package's folder (models shipped as pip packages)."""
    module = spec.removeprefix("pip:")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise TrainingInputError(f"{spec}: python package '{module}' is not installed (see requirements.txt)")
    return Path(list(found.submodule_search_locations)[0])


def resolve_model_source(spec: str) -> str:
    """A hub id or local folder as is; `pip:<module>` -> <package>/model (or the package folder)."""
    if not spec.startswith("pip:"):
        return spec
    package = resolve_pip_package(spec)
    return str(package / "model" if (package / "model").is_dir() else package)


def hub_local_only(spec: str, key: str) -> bool:
    """from_pretrained's `local_files_only` for a model source; a hub id neither cached nor reachable
    fails at once.

    Without this a missing hub model costs a minute of retries (huggingface_hub retries each file
    5 times with back-off) and a wall of warnings. A cached model is loaded from the cache only."""
    if spec.startswith(("pip:", "timm:")) or Path(spec).exists():
        return False
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    how = (f"download it once where there is network (`hf download {spec} --local-dir models/{spec}`) and set "
           f"{key} to that folder (or to any save_pretrained folder)")
    try:
        cached = try_to_load_from_cache(spec, "config.json")
    except ValueError:   # not a valid hub id either
        raise TrainingInputError(f"{key} {spec!r}: no such folder, and not a Hugging Face hub id") from None
    if isinstance(cached, str):
        return True
    where = f"not a local folder and not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        raise TrainingInputError(f"{key} {spec!r}: {where}, and HF_HUB_OFFLINE is set; {how}")
    try:
        HfApi().model_info(spec, timeout=10)
    except Exception as err:   # no network, no such repo, gated: one attempt, then the clear message
        raise TrainingInputError(f"{key} {spec!r}: {where}, and the hub cannot be asked "
                                 f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); {how}") from None
    return False



@dataclass
class Expert:
    """What differs between the text and the vision expert; `trainer.run_expert` does the rest."""
    model: PreTrainedModel
    processor: Any                             # tokenizer / image processor, saved beside the model
    fields_wanted: tuple[str, ...]             # shard members read: ("txt",) or IMAGE_FIELDS
    decode_train: Callable[[dict, int], dict]
    decode_eval: Callable[[dict, int], dict]
    collate: Callable[[list[dict]], dict]      # features (no metadata) -> model batch
    model_id: str                              # as given in params (no resolved paths)
    pretrained: bool
    learning_rate: float
    stage: str                                 # its stage name: marks its output folders and names its scratch run
    bucket_by_length: bool = False
    before_save: Callable[[Any], None] | None = None   # model -> None, run once before save_pretrained
