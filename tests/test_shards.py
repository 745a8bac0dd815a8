import io
import json
import tarfile

import pytest
import webdataset as wds
from PIL import Image

from stages.records import safe_key
from stages.shards import ShardSetWriter, iter_examples, meta_bytes, shard_files


def jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, "JPEG", quality=95)
    return buf.getvalue()


IDS = ["mami_train_1.jpg", "olid_test_a/b", "hateful_memes_train_" + "\u00e9" * 60, "../../etc/x", "plain_1"]


def write_sample_set(root):
    """train: 3 image examples (2 per shard -> 2 shards) + 2 text-only; val: 1 text-only; test: none."""
    with ShardSetWriter(root, examples_per_shard=2) as writer:
        for i, example_id in enumerate(IDS):
            key = safe_key(example_id)
            meta = {"id": example_id, "key": key, "has_image": i < 3, "labels": {"abuse_hate": i % 2}}
            image = jpeg((50 * i, 0, 0)) if i < 3 else None
            writer.write("train", key, f"[CAP] text {i} \u05e9\u05dc\u05d5\u05dd 😂 [/CAP] <lang=en>", meta,
                         image=image, image_ext="jpg" if image else None)
        writer.write("val", "v1", "<lang=en>", {"id": "v1", "key": "v1", "has_image": False, "labels": {}})
    return writer.shard_counts()


def test_layout_and_members(tmp_path):
    counts = write_sample_set(tmp_path)
    assert counts == {"train": {"image": 2, "textonly": 1}, "val": {"image": 0, "textonly": 1},
                      "test": {"image": 0, "textonly": 0}, "diagnostic": {"image": 0, "textonly": 0}}
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        "shard-00000.tar", "shard-00001.tar", "textonly-00000.tar"]
    assert sorted(p.name for p in (tmp_path / "val").iterdir()) == ["textonly-00000.tar"]
    assert not (tmp_path / "test").exists()
    with tarfile.open(tmp_path / "train" / "shard-00000.tar") as tar:
        members = tar.getmembers()
    first, second = safe_key(IDS[0]), safe_key(IDS[1])
    assert [m.name for m in members] == [f"{first}.jpg", f"{first}.json", f"{first}.txt",
                                         f"{second}.jpg", f"{second}.json", f"{second}.txt"]
    assert all(m.mtime == 0 and m.uname == "root" and m.mode == 0o444 for m in members)
    long_key = safe_key(IDS[2])
    assert len(long_key) > 100  # needs the PAX format; USTAR would refuse it
    with tarfile.open(tmp_path / "train" / "shard-00001.tar") as tar:
        assert tar.getnames()[0] == f"{long_key}.jpg"


def test_seed_snippet_reads_image_shards(tmp_path):
    write_sample_set(tmp_path)
    ds = (wds.WebDataset(str(tmp_path / "train" / "shard-{00000..00001}.tar"), shardshuffle=False)
          .decode("pil").to_tuple("jpg;png", "txt", "json"))
    rows = list(ds)
    assert [meta["id"] for _, _, meta in rows] == IDS[:3]
    assert all(image.size == (16, 16) and image.mode == "RGB" for image, _, _ in rows)
    assert rows[1][1] == "[CAP] text 1 \u05e9\u05dc\u05d5\u05dd 😂 [/CAP] <lang=en>"


def test_iter_examples_both_modes(tmp_path):
    write_sample_set(tmp_path)
    with_images = list(iter_examples(tmp_path, "train", with_images=True))
    assert [ex.id for ex in with_images] == IDS[:3]
    assert [ex.key for ex in with_images] == [safe_key(i) for i in IDS[:3]]
    assert with_images[2].image.getpixel((8, 8))[0] == pytest.approx(100, abs=6)
    every = list(iter_examples(tmp_path, "train", with_images=False))
    assert [ex.id for ex in every] == IDS and all(ex.image is None for ex in every)
    assert [ex.meta["labels"]["abuse_hate"] for ex in every] == [0, 1, 0, 1, 0]
    assert [ex.id for ex in iter_examples(tmp_path, "val", with_images=False)] == ["v1"]
    assert list(iter_examples(tmp_path, "test", with_images=True)) == []
    assert shard_files(tmp_path, "train", ("textonly",)) == [str(tmp_path / "train" / "textonly-00000.tar")]


def test_text_only_readers_of_both_kinds(tmp_path):
    write_sample_set(tmp_path)
    urls = shard_files(tmp_path, "train")
    ds = wds.WebDataset(urls, shardshuffle=False).decode().to_tuple("txt", "json")
    assert [meta["id"] for _, meta in ds] == IDS


def test_bytes_are_reproducible(tmp_path):
    write_sample_set(tmp_path / "a")
    write_sample_set(tmp_path / "b")
    names = ("train/shard-00000.tar", "train/shard-00001.tar", "train/textonly-00000.tar", "val/textonly-00000.tar")
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_meta_json_is_sorted_and_valid_utf8_even_with_lone_surrogates():
    data = meta_bytes({"b": 1, "a": json.loads('"x\\udc80y"'), "c": "\u00e9"})
    assert data.decode("utf-8") == '{"a":"x\ufffdy","b":1,"c":"\u00e9"}'


def test_writer_rejects_bad_calls(tmp_path):
    with ShardSetWriter(tmp_path, 5) as writer:
        with pytest.raises(ValueError):
            writer.write("dev", "k", "t", {})
        with pytest.raises(ValueError):
            writer.write("train", "k", "t", {}, image=b"x", image_ext="gif")
    with pytest.raises(ValueError):
        ShardSetWriter(tmp_path, 0)
