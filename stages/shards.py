"""Writing and reading the packed WebDataset shards.

Layout under the shard dir (Step_3/shards):
  <split>/shard-%05d.tar      examples WITH an image:  <key>.jpg|png, <key>.json, <key>.txt
  <split>/textonly-%05d.tar   examples without one:    <key>.json, <key>.txt
key = records.safe_key(id) (no dots or slashes); <key>.txt is the combined text (UTF-8),
<key>.json the metadata and unified labels (sorted keys). A split with no examples of a kind has
no files of that kind. index.json: {"<split>/<file>": examples} of every tar written, so that a
reader can tell a missing, truncated or extra shard (stages/training/data.py checks it).

    for ex in iter_examples("Step_3/shards", "train", with_images=True):   # image shards only
        ex.image, ex.text, ex.meta["labels"]["abuse_hate"]
    for ex in iter_examples("Step_3/shards", "train", with_images=False):  # every example, no pixels
        ex.text, ex.meta
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from stages.records import PACKED_SPLITS, SPLITS  # noqa: F401 - SPLITS: the notebook imports it from here
from stages.text import repair_unicode

KINDS = {"image": "shard-%05d.tar", "textonly": "textonly-%05d.tar"}
INDEX = "index.json"   # beside the split folders
IMAGE_EXTENSIONS = ("jpg", "png")


@dataclass(frozen=True)
class ShardExample:
    key: str
    text: str
    meta: dict[str, Any]
    image: Any = None  # PIL.Image.Image when read with_images, else None

    @property
    def id(self) -> str:
        return self.meta["id"]


def meta_bytes(meta: dict[str, Any]) -> bytes:
    """The <key>.json entry: sorted keys, compact, valid UTF-8 even if a label string was not."""
    return repair_unicode(json.dumps(meta, sort_keys=True, ensure_ascii=False, separators=(",", ":"))).encode("utf-8")


class ShardSetWriter:
    """Writes examples into <root>/<split>/{shard,textonly}-%05d.tar with webdataset's ShardWriter.

    A writer per (split, kind) is opened at its first example, so no empty tar files appear.
    Bytes depend only on the order of `write` calls (mtime=0, fixed owner and mode).
    """

    def __init__(self, root: Path, examples_per_shard: int):
        if examples_per_shard < 1:
            raise ValueError(f"examples_per_shard must be >= 1, got {examples_per_shard}")
        self.root = Path(root)
        self.examples_per_shard = examples_per_shard
        self._writers: dict[tuple[str, str], Any] = {}
        self._counts = {split: {kind: 0 for kind in KINDS} for split in PACKED_SPLITS}
        self._examples: dict[str, int] = {}   # "<split>/<file>" -> examples written

    def _writer(self, split: str, kind: str):
        if (split, kind) not in self._writers:
            import webdataset as wds  # imported late: it pulls in torch (~0.8 s, 500 MB)

            folder = self.root / split
            folder.mkdir(parents=True, exist_ok=True)
            self._writers[split, kind] = wds.ShardWriter(
                str(folder / KINDS[kind]), maxcount=self.examples_per_shard, maxsize=float("inf"),
                verbose=0, mtime=0, user="root", group="root", mode=0o444,
            )  # webdataset 1.0.2 ignores `format=`: tarfile's default PAX format holds long (escaped) keys
        return self._writers[split, kind]

    def write(self, split: str, key: str, text: str, meta: dict[str, Any],
              image: bytes | None = None, image_ext: str | None = None) -> None:
        if split not in PACKED_SPLITS:
            raise ValueError(f"unknown split {split!r}")
        sample = {"__key__": key, "txt": text.encode("utf-8"), "json": meta_bytes(meta)}
        if image is not None:
            if image_ext not in IMAGE_EXTENSIONS:
                raise ValueError(f"image extension must be one of {IMAGE_EXTENSIONS}, got {image_ext!r}")
            sample[image_ext] = image
        writer = self._writer(split, "image" if image is not None else "textonly")
        writer.write(sample)
        name = f"{split}/{Path(writer.fname).name}"
        self._examples[name] = self._examples.get(name, 0) + 1

    def shard_counts(self) -> dict[str, dict[str, int]]:
        """{split: {kind: number of tar files written}}; complete after close()."""
        return {split: dict(kinds) for split, kinds in self._counts.items()}

    def close(self) -> None:
        for (split, kind), writer in self._writers.items():
            self._counts[split][kind] = writer.shard  # ShardWriter.shard = shards opened so far
            writer.close()
        self._writers.clear()
        write_index(self.root, self._examples)

    def __enter__(self) -> "ShardSetWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_index(root: Path, examples: dict[str, int]) -> None:
    """root/index.json: {"<split>/<file>": examples} (sorted keys, stable bytes)."""
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / INDEX).write_text(json.dumps(dict(sorted(examples.items())), indent=1) + "\n", encoding="utf-8")


def shard_files(shard_dir: str | Path, split: str, kinds: tuple[str, ...] = ("image", "textonly")) -> list[str]:
    """Sorted tar paths of `split`, image shards before text-only ones."""
    folder = Path(shard_dir) / split
    files: list[str] = []
    for kind in kinds:
        prefix = KINDS[kind].split("%")[0]
        files += sorted(str(p) for p in folder.glob(f"{prefix}*.tar"))
    return files


def iter_examples(shard_dir: str | Path, split: str, with_images: bool = True) -> Iterator[ShardExample]:
    """Stream all of a split's examples in written order (no node/worker splitting, no shuffle).

    with_images=True: the image shards only, each ShardExample with a decoded RGB PIL image.
    with_images=False: every example (image and text-only shards); images are not decoded.
    """
    import webdataset as wds

    urls = shard_files(shard_dir, split, ("image",) if with_images else ("image", "textonly"))
    if not urls:
        return
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False, nodesplitter=None, workersplitter=None)
    if with_images:
        for key, image, text, meta in dataset.decode("pil").to_tuple("__key__", "jpg;png", "txt", "json"):
            yield ShardExample(key=key, text=text, meta=meta, image=image)
    else:
        for key, text, meta in dataset.decode().to_tuple("__key__", "txt", "json"):
            yield ShardExample(key=key, text=text, meta=meta)
