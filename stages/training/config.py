"""The expert stages' configuration: the shared `train` group with `Tasks` (train.tasks, read once:
fields, loss weights, head layout), an expert's paths, the label names of its classifier and where
its model comes from (hub id, local folder or `pip:<package>`)."""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from stages import heads
from stages.common import project_path
from stages.config import Part, check_fields, knob
from stages.errors import InputError
from stages.taxonomy import Taxonomy

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LEARNING_RATE_LIMITS = {"above": 0.0, "max": 1.0}   # > 0; above 1 is a typo (5e5 for 5e-5), not a learning rate


class TrainingInputError(InputError):
    """Bad shards, params or model sources; the message names file / example / value."""


class Tasks(NamedTuple):
    """`train.tasks` (with `train.head_weights`) resolved once: the label fields learned, in params
    order (the first one's val macro-F1 picks the best epoch), the weight of each one's loss, and
    their head layout. One unified binary field has no layout: a plain 2-class expert with the
    single-task metrics and predictions.
    (A NamedTuple, not a dataclass: stages/config.py would read a dataclass field as a group of keys.)"""
    head_weights: dict[str, float]   # every field learned, in order -> the weight of its loss
    layout: heads.HeadLayout | None

    @classmethod
    def read(cls, names: Any, head_weights: dict[str, float] | None = None, label_taxonomy: str | None = None,
             target_group_level: str = "name") -> Tasks:
        """From params: the list of fields and the loss weights of some of them (default 1); the head
        layout from the taxonomy (needed unless one unified binary field is learned)."""
        names = names.names if isinstance(names, Tasks) else names
        if not isinstance(names, (list, tuple)) or not names or not all(isinstance(name, str) for name in names):
            raise TrainingInputError(f"train.tasks: {names!r} must be a list of label fields")
        if len(set(names)) != len(names):
            raise TrainingInputError(f"train.tasks: {list(names)} must be distinct field names")
        given = dict(head_weights or {})
        unknown = sorted(set(given) - set(names))
        if unknown or any(not isinstance(w, (int, float)) or not 0 <= w < math.inf for w in given.values()):
            raise TrainingInputError(f"train.head_weights: {given} must map fields of train.tasks "
                                     f"to weights >= 0 (not learned: {', '.join(unknown) or '-'})")
        weights = {name: float(given.get(name, 1.0)) for name in names}
        label_taxonomy = label_taxonomy or str(project_path("split", "label_taxonomy"))
        if len(names) == 1 and names[0] in binary_fields(label_taxonomy):
            return cls(weights, None)
        try:
            return cls(weights, heads.head_layout(tuple(names), label_taxonomy, target_group_level))
        except OSError as err:
            raise TrainingInputError(str(err)) from err

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.head_weights)

    @property
    def primary(self) -> str:
        """The field whose val macro-F1 picks the best epoch: the first one."""
        return self.names[0]

    @property
    def single(self) -> str | None:
        """The field of a plain 2-class expert; None for a multi-head one."""
        return None if self.layout else self.names[0]

    def encode(self, meta: dict[str, Any], where: str) -> int | list[float] | None:
        """One example's target: a single task's 0/1, or the layout's target vector; None: not labeled."""
        if self.layout is None:
            return read_target(meta, self.names[0], where)
        try:
            return self.layout.encode(meta, where)
        except heads.HeadLayoutError as err:
            raise TrainingInputError(str(err)) from err

    def id2label(self) -> dict[int, str]:
        """The classifier's output names: the task's two classes, or every head's `<field>=<class>`."""
        return self.layout.id2label() if self.layout else dict(enumerate(label_names(self.names[0])))


def binary_fields(taxonomy_path: str) -> tuple[str, ...]:
    """The taxonomy's binary unified fields (one of them alone is learned by a plain 2-class expert)."""
    try:
        return Taxonomy.load(taxonomy_path).fields_of_type("binary")
    except OSError as err:
        raise TrainingInputError(f"train: label taxonomy {taxonomy_path}: {err.strerror or err}") from err


def read_target(meta: dict[str, Any], task: str, where: str) -> int | None:
    labels = meta.get("labels")
    if not isinstance(labels, dict) or task not in labels:
        raise TrainingInputError(f"{where}: json has no 'labels.{task}'")
    value = labels[task]
    if value is None:
        return None
    if isinstance(value, (bool, int)) and value in (0, 1):
        return int(value)
    raise TrainingInputError(f"{where}: labels.{task} = {value!r}, expected 0, 1 or null")


@dataclass(frozen=True)
class TrainConfig:
    """The shared `train` params group: `dvc exp run -S train.epochs=3` changes both experts."""
    tasks: Tasks = knob(  # read as a list of field names, resolved in __post_init__
        help="label fields learned, one head each; the first one's val macro-F1 picks the best epoch",
        factory=lambda: ["abuse_hate"])
    head_weights: dict[str, float] = knob(help="field -> weight of its loss (default 1), e.g. {target_group: 0.5}",
                                          factory=dict)
    target_group_level: str = knob("name", "target_group head over the taxonomy's group names | their category",
                                   choices=heads.TARGET_GROUP_LEVELS)
    label_taxonomy: str | None = knob(None, "the label taxonomy: which fields are binary, the heads' layout "
                                      "(dvc.yaml's cmd passes split.label_taxonomy; null: the project's)",
                                      cli_only=True)
    epochs: int = knob(4, "passes over the train split", min=1)
    batch_size: int = knob(16, "per process", min=1)
    learning_rate: float = knob(5e-5, "an expert's own learning_rate, when set, wins; in (0, 1]",
                                **LEARNING_RATE_LIMITS)
    warmup_ratio: float = knob(0.1, "share of all steps with a linear warmup, in [0, 1)", min=0.0, below=1.0)
    weight_decay: float = knob(0.01, "AdamW weight decay, in [0, 1]", min=0.0, max=1.0)
    seed: int = knob(0, "model init, data order and augmentation")
    class_weighting: bool = knob(True, "cross-entropy weighted by inverse train class frequency")
    num_workers: int = knob(0, "DataLoader workers per process (the batch order does not depend on it)", min=0)

    def __post_init__(self):
        check_fields(self, "train")
        object.__setattr__(self, "tasks", Tasks.read(self.tasks, self.head_weights, self.label_taxonomy,
                                                     self.target_group_level))


@dataclass(frozen=True)
class ExpertPaths:
    """Where an expert stage reads and writes: keys of its own params group (`text` / `vision`)."""
    shards: Path = knob(help="packed shards (train/ val/ test/): pack's output_dir, dvc.yaml's cmd passes it",
                        cli_only=True)
    out_model: Path = knob(help="the saved expert (save_pretrained)")
    metrics: Path = knob(help="headline metrics JSON (the DVC metric: epochs, val/test scores)")
    live_dir: Path = knob(help="DVCLive dir (curves for `dvc plots`)")
    predictions: Path = knob(help="val/test predictions for Step 5")
    scratch: Path = knob(help="holds <stage>-run/: checkpoints + the live dir while training (removed after success)")
    trace_ids: Path | None = knob(None, "debug: write the train ids each rank/worker read, per epoch, to this folder",
                                  cli_only=True)
    report: Path | None = knob(None, "the full metrics record (per dataset, head, functionality, group); null: none")

    def run_dir(self, stage: str) -> Path:
        """The stage's own folder inside `scratch`: made fresh (unless --resume), removed alone."""
        return self.scratch / f"{stage}-run"


def stage_parts(name: str, config_cls) -> tuple[Part, ...]:
    """An expert stage's config: the shared `train` group, then its own group (settings + paths)."""
    return Part("train", TrainConfig), Part(name, config_cls), Part(name, ExpertPaths)


def label_names(task: str) -> tuple[str, str]:
    return (f"not_{task}", task)


def label_maps(tasks: Tasks) -> tuple[dict[int, str], dict[str, int]]:
    """(id2label, label2id) of the classifier's outputs."""
    id2label = tasks.id2label()
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
    """What differs between the text and the vision expert, built by its stage and handed to
    `trainer.train_expert`, which does the rest."""
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
