"""The pack stage end to end on a corpus of faulty inputs: every example is packed correctly or
counted under the right reason; outputs are deterministic, readable by the seed's snippet, and
absent when the stage fails."""
import json
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import webdataset as wds

from stages.common import OUTPUT_MARKER, REPO_ROOT, project_path
from stages.errors import GateError
from stages.images import ImageSpec
from stages.pack import PackConfig, PackError, PackFailed, main, pack
from stages.records import ManifestRecord, safe_key
from stages.shards import INDEX, iter_examples
from stages.taxonomy import Taxonomy
from tests.test_images import (
    BLUE,
    GREY,
    RED,
    WHITE,
    close_to,
    make_dir,
    write_16bit_png,
    write_animated_gif,
    write_bytes,
    write_cmyk_jpeg,
    write_exif_rotated_jpeg,
    write_half_transparent_png,
    write_huge_png,
    write_palette_png_with_transparency,
    write_rgb,
    write_truncated_jpeg,
)

TAXONOMY = project_path("split", "label_taxonomy")
OLID_OFF = {"subtask_a": "OFF", "subtask_b": "TIN", "subtask_c": "GRP"}
OLID_NOT = {"subtask_a": "NOT", "subtask_b": "NULL", "subtask_c": "NULL"}
LONG_CAPTION = ("all work and no play " * 5000)[:100_000]
BAD_UTF8 = "caf\udce9 au lait"  # how undecodable bytes (0xE9 in Latin-1) reach a JSON manifest
EMOJI_RTL = ("\u05d6\u05d4 \u05dc\u05d0 \u05de\u05e6\u05d7\u05d9\u05e7 "
             "\U0001F602\U0001F469\u200d\U0001F4BB \u202bRTL\u202c")


def hm(example_id, image, label=1, text=None, split="train", **extra):
    return {"id": example_id, "dataset": "hateful_memes", "split": split, "image_path": image,
            "text_raw": text, "labels_raw": {"label": label} if label is not None else None, **extra}


def olid(example_id, text, labels=OLID_OFF, split="train", **extra):
    return {"id": example_id, "dataset": "olid", "split": split, "image_path": None, "text_raw": text,
            "labels_raw": labels, **extra}


def build_corpus(root: Path):
    """(records, ocr by id, pack split by id, expected outcome by id) for the faulty corpus."""
    img = root / "img"
    img.mkdir()
    p = lambda path: str(path)  # noqa: E731 - absolute paths, as ingest writes for data outside the repo
    cases = [
        (hm("hateful_memes_train_plain", p(write_rgb(img / "plain.jpg")), label=0), "packed"),
        (hm("hateful_memes_train_alpha", p(write_half_transparent_png(img / "alpha.png"))), "packed"),
        (hm("hateful_memes_train_palette", p(write_palette_png_with_transparency(img / "pal.png"))), "packed"),
        (hm("hateful_memes_train_cmyk", p(write_cmyk_jpeg(img / "cmyk.jpg"))), "packed"),
        (hm("hateful_memes_train_16bit", p(write_16bit_png(img / "g16.png"))), "packed"),
        (hm("hateful_memes_train_gif", p(write_animated_gif(img / "anim.gif"))), "packed"),
        (hm("hateful_memes_train_exif", p(write_exif_rotated_jpeg(img / "rot.jpg"))), "packed"),
        (hm("hateful_memes_val_relative", "img/plain.jpg", split="dev_seen"), "packed"),  # relative to image_root
        (hm("hateful_memes_train_notext", p(write_rgb(img / "blue.jpg", BLUE))), "packed"),
        (hm("hateful_memes_test_unlabeled", p(write_rgb(img / "u.jpg")), label=None, split="test_unseen"), "packed"),
        (hm("hateful_memes_train_a.b.c", p(img / "plain.jpg")), "packed"),
        (hm("hateful_memes_train_x/y", p(img / "plain.jpg")), "packed"),
        (hm("hateful_memes_train_\u65e5\u672c\u8a9e", p(img / "blue.jpg")), "packed"),
        (hm("../../etc/x", p(img / "plain.jpg")), "packed"),
        (hm("hateful_memes_train_truncated", p(write_truncated_jpeg(img / "cut.jpg"))), "undecodable_image"),
        (hm("hateful_memes_train_zero", p(write_bytes(img / "zero.jpg", b""))), "undecodable_image"),
        (hm("hateful_memes_train_huge", p(write_huge_png(img / "huge.png"))), "image_too_large"),
        (hm("hateful_memes_train_missing", p(img / "nope.jpg"), text="caption survives"), "missing_image"),
        (hm("hateful_memes_train_dir", p(make_dir(img / "dir.jpg"))), "not_a_file"),
        (hm("hateful_memes_train_badlabel", p(img / "plain.jpg"), label="maybe"), "invalid_labels"),
        (olid("olid_train_emoji", EMOJI_RTL, lang="he"), "packed"),
        (olid("olid_train_long", LONG_CAPTION, OLID_NOT), "packed"),
        (olid("olid_train_badutf8", BAD_UTF8), "packed"),
        (olid("olid_train_empty", ""), "empty_example"),
        (olid("olid_train_none", None), "empty_example"),
        (olid("olid_train_lone\udcff", "fine text"), "invalid_id"),
        (olid("olid_train_excluded", "not in splits.json"), "excluded"),
    ]
    records = [record for record, _ in cases]
    expected = {record["id"]: outcome for record, outcome in cases}
    ocr = {
        "hateful_memes_train_plain": [("TOP TEXT", 0.95), ("smudge", 0.1), ("bottom text", None)],
        "hateful_memes_train_alpha": [("Look at this", 0.9)],  # repeats the caption below -> left out
        "hateful_memes_train_missing": [("meme words", None)],
    }
    records[1]["text_raw"] = "look at this!"
    pack_split = {r["id"]: ("val" if i % 5 == 3 else "test" if i % 7 == 4 else "train")
                  for i, r in enumerate(records) if expected[r["id"]] != "excluded"}
    return records, ocr, pack_split, expected


def write_inputs(root: Path, records, ocr, pack_split) -> dict[str, Path]:
    paths = {"manifest": root / "manifest.jsonl", "ocr": root / "ocr.jsonl", "splits": root / "splits.json"}
    with open(paths["manifest"], "w", encoding="utf-8") as f:  # ASCII-escaped: lone surrogates stay writable
        f.writelines(json.dumps(r) + "\n" for r in records)
    with open(paths["ocr"], "w", encoding="utf-8") as f:
        for r in records:
            if r["id"] in ocr:
                lines = [{"text": t, "conf": c, "bbox": None} for t, c in ocr[r["id"]]]
                f.write(json.dumps({"id": r["id"], "dataset": r["dataset"], "split": r["split"],
                                    "image_path": r["image_path"], "ocr": {"lines": lines, "source": "ocr"}}) + "\n")
    paths["splits"].write_text(json.dumps(pack_split, sort_keys=True))
    return paths


@pytest.fixture
def corpus(tmp_path):
    records, ocr, pack_split, expected = build_corpus(tmp_path)
    paths = write_inputs(tmp_path, records, ocr, pack_split)
    config = PackConfig(manifest=paths["manifest"], ocr=paths["ocr"], output_dir=tmp_path / "out" / "shards",
                        stats=tmp_path / "out" / "stats.json", label_taxonomy=TAXONOMY, splits=paths["splits"],
                        image=ImageSpec(image_size=32), examples_per_shard=4, max_failure_rate=0.99, workers=2,
                        image_root=tmp_path)
    return config, records, pack_split, expected


def read_all(shard_dir: Path) -> dict[str, tuple]:
    """id -> (split, text, meta, image or None), through the public reader."""
    out = {}
    for split in ("train", "val", "test"):
        for ex in iter_examples(shard_dir, split, with_images=False):
            out[ex.id] = (split, ex.text, ex.meta, None)
        for ex in iter_examples(shard_dir, split, with_images=True):
            out[ex.id] = (split, ex.text, ex.meta, ex.image)
    return out


def test_faulty_corpus_each_example_packed_or_counted(corpus):
    config, records, pack_split, expected = corpus
    stats = pack(config)
    packed = read_all(config.output_dir)
    want_packed = {i for i, outcome in expected.items() if outcome == "packed"}
    assert set(packed) == want_packed
    for reason in ("undecodable_image", "image_too_large", "missing_image", "not_a_file", "invalid_labels",
                   "invalid_id", "empty_example"):
        ids = {i.replace("\udcff", "\ufffd") for i, outcome in expected.items() if outcome == reason}
        entry = stats["failures"][reason]
        assert entry["count"] == len(ids) and {e["id"] for e in entry["examples"]} == ids, reason
    assert stats["excluded_examples"] == 1
    assert stats["total_examples"] == len(records) == stats["packed_examples"] + stats["failed_examples"] + 1
    assert stats["failure_rate"] == round(stats["failed_examples"] / (len(records) - 1), 6)
    assert stats["text_only_packed"] == 3 and stats["image_packed"] == len(want_packed) - 3

    split, text, meta, image = packed["hateful_memes_train_exif"]
    assert close_to(image.getpixel((16, 4)), RED, 40) and close_to(image.getpixel((16, 28)), BLUE, 40)
    assert close_to(packed["hateful_memes_train_alpha"][3].getpixel((3, 16)), WHITE)
    assert close_to(packed["hateful_memes_train_palette"][3].getpixel((3, 16)), WHITE)
    assert close_to(packed["hateful_memes_train_cmyk"][3].getpixel((16, 16)), RED, 20)
    assert close_to(packed["hateful_memes_train_16bit"][3].getpixel((16, 16)), GREY, 3)
    assert close_to(packed["hateful_memes_train_gif"][3].getpixel((16, 16)), RED)
    assert all(ex[3] is None or ex[3].size == (32, 32) for ex in packed.values())

    assert packed["hateful_memes_train_plain"][1] == "[OCR] TOP TEXT bottom text [/OCR] <lang=en>"
    assert packed["hateful_memes_train_alpha"][1] == "[CAP] look at this! [/CAP] <lang=en>"
    assert packed["hateful_memes_train_notext"][1] == "<lang=en>"
    assert packed["olid_train_emoji"][1] == f"[CAP] {EMOJI_RTL} [/CAP] <lang=he>"
    assert packed["olid_train_long"][1] == f"[CAP] {LONG_CAPTION[:2000].strip()} [/CAP] <lang=en>"  # max_text_chars
    assert packed["olid_train_badutf8"][1] == "[CAP] caf\ufffd au lait [/CAP] <lang=en>"
    assert stats["text"]["ocr_lines_dropped_low_conf"] == 1 and stats["text"]["ocr_dropped_as_caption_repeat"] == 1

    for hostile in ("../../etc/x", "hateful_memes_train_x/y", "hateful_memes_train_a.b.c"):
        assert packed[hostile][2]["key"] == safe_key(hostile) and "/" not in safe_key(hostile)
    files = {p.relative_to(config.output_dir).as_posix() for p in config.output_dir.rglob("*") if p.is_file()}
    assert (config.output_dir / OUTPUT_MARKER).read_text() == "pack\n"
    files -= {OUTPUT_MARKER, INDEX}
    assert set(json.loads((config.output_dir / INDEX).read_text())) == files   # every tar listed, nothing else
    assert all(name.split("/")[0] in ("train", "val", "test") and name.endswith(".tar") for name in files)
    assert not (config.output_dir.parent / "etc").exists()
    assert json.loads(config.stats.read_text()) == stats


def test_missing_image_can_be_packed_text_only(corpus):
    config, _, _, expected = corpus
    stats = pack(replace(config, require_images=False))
    assert stats["failures"]["missing_image"]["count"] == 0
    assert stats["missing_image_packed_text_only"]["count"] == 1
    assert stats["missing_image_packed_text_only"]["examples"][0]["id"] == "hateful_memes_train_missing"
    text_only = {ex.id: ex for ex in iter_examples(config.output_dir, "train", with_images=False)
                 if not ex.meta["has_image"]}
    assert text_only["hateful_memes_train_missing"].text == ("[OCR] meme words [/OCR] [CAP] caption survives [/CAP] "
                                                            "<lang=en>")


def test_seed_snippet_reads_back_manifest_texts_and_labels(corpus):
    config, records, pack_split, expected = corpus
    pack(config)
    taxonomy = Taxonomy.load(TAXONOMY)
    by_id = {r["id"]: r for r in records}
    seen = set()
    for split in ("train", "val", "test"):
        shards = sorted(str(p) for p in (config.output_dir / split).glob("shard-*.tar"))
        ds = wds.WebDataset(shards, shardshuffle=False).decode("pil").to_tuple("jpg;png", "txt", "json")
        for image, text, meta in ds:
            record = by_id[meta["id"]]
            labels = taxonomy.map(ManifestRecord(**record)).to_json()
            assert (meta["split"], meta["dataset"], meta["orig_split"]) == (pack_split[meta["id"]], record["dataset"],
                                                                           record["split"])
            assert meta["labels"] == labels["labels"] and meta["aux"] == labels["aux"]
            assert meta["labeled"] == (record["labels_raw"] is not None) and meta["has_image"]
            assert text.endswith("<lang=en>") and (record["text_raw"] is None or record["text_raw"] in text)
            assert image.mode == "RGB"
            seen.add(meta["id"])
    assert seen == {i for i, outcome in expected.items() if outcome == "packed" and by_id[i]["image_path"]}


def test_two_runs_and_worker_counts_give_identical_bytes(corpus, tmp_path):
    config = corpus[0]
    runs = []
    for name, workers in (("a", 1), ("b", 2), ("c", 2)):
        out = tmp_path / name
        stats = pack(replace(config, output_dir=out / "shards", stats=out / "stats.json", workers=workers))
        files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        runs.append(files)
    assert sum(stats["splits"][s]["shards"]["image"] for s in stats["splits"]) >= 3  # several shards compared
    assert runs[0] == runs[1] == runs[2]


def test_failure_gate_exits_nonzero_and_writes_nothing(corpus, capsys):
    config = corpus[0]
    argv = ["--manifest", str(config.manifest), "--ocr", str(config.ocr), "--output-dir", str(config.output_dir),
            "--label-taxonomy", str(config.label_taxonomy), "--splits", str(config.splits),
            "--stats", str(config.stats), "--image-root", str(config.image_root),
            "--image-dirs", str(config.image_root),
            "--image-size", "32", "--workers", "1", "--max-failure-rate", "0.005"]
    with pytest.raises(GateError) as gate:
        main(argv)
    message = str(gate.value)
    assert "\n" not in message and message.startswith("failure rate") and "no outputs written" in message
    assert "undecodable_image: 2" in message and "hateful_memes_train_truncated" in message
    assert not config.output_dir.exists() and not config.stats.exists()
    assert list(config.output_dir.parent.iterdir()) == []  # no temp dirs or files left behind
    with pytest.raises(PackFailed):
        pack(replace(config, max_failure_rate=0.3))
    main(argv[:-2] + ["--max-failure-rate", "0.5"])  # under the gate: outputs appear
    assert config.stats.exists() and (config.output_dir / "train" / "shard-00000.tar").exists()


def test_bad_manifest_line_stops_the_stage_cleanly(corpus):
    config = corpus[0]
    with open(config.manifest, "a", encoding="utf-8") as f:
        f.write('{"id": "olid_train_zzz", "dataset": "olid"}\n')
    with pytest.raises(PackError, match=r"manifest.jsonl:28: field 'split': missing"):
        pack(config)
    assert not config.output_dir.parent.exists() or list(config.output_dir.parent.iterdir()) == []


def test_seed_command_line_and_limit(corpus, tmp_path):
    config = corpus[0]
    out = tmp_path / "cli"
    cmd = [sys.executable, "Step_3/pack_examples.py", "--manifest", str(config.manifest), "--ocr", str(config.ocr),
           "--output-dir", str(out / "shards"), "--label-taxonomy", str(config.label_taxonomy),
           "--splits", str(config.splits), "--examples-limit", "5", "--stats", str(out / "stats.json"),
           "--image-size", "32", "--workers", "2", "--image-dirs", str(tmp_path), "--max-failure-rate", "0.5"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    stats = json.loads((out / "stats.json").read_text())
    # 5 of the 27 records, evenly spaced (0, 6, 11, 17, 22): both datasets, not just the first records
    assert stats["total_examples"] == 5 and stats["examples_limit"] == 5
    assert stats["packed_examples"] == 4 and stats["failures"]["missing_image"]["examples"][0]["id"] == \
        "hateful_memes_train_missing"
    seen = {name: sum(counts[k] for k in ("train", "val", "test", "failed"))
            for name, counts in stats["datasets"].items()}
    assert seen == {"hateful_memes": 4, "olid": 1}
    assert "examples/s" in result.stderr


def test_bad_splits_file_is_a_clear_error(corpus):
    config = corpus[0]
    config.splits.write_text(json.dumps({"hateful_memes_train_plain": "dev"}))
    with pytest.raises(PackError, match=r"hateful_memes_train_plain.*split must be one of"):
        pack(config)
    assert not config.output_dir.exists()


def test_defaults_come_from_params_and_flags_override(tmp_path):
    from stages.config import parse
    from stages.pack import PARTS

    params = tmp_path / "params.yaml"
    params.write_text("pack: {image_size: 224, resize: pad, image_format: png, require_images: false,\n"
                      "       examples_per_shard: 10, workers: 3, ocr_min_conf: 0.7}\n")
    params.write_text(params.read_text().replace("pack: {", "pack: {output_dir: out, stats: st.json, "))
    inputs = ["--manifest", "m.jsonl", "--ocr", "o.jsonl", "--label-taxonomy", "t.json", "--splits", "s.json"]
    (config,), _ = parse("pack", "", PARTS, ["--params", str(params), "--image-size", "64", *inputs,
                                             "--balance-tolerance", "0.1"])   # as dvc.yaml's cmd gives them
    assert (config.manifest, config.ocr, config.label_taxonomy, config.splits) == (
        Path("m.jsonl"), Path("o.jsonl"), Path("t.json"), Path("s.json"))
    assert (config.image.image_size, config.image.resize, config.image.image_format) == (64, "pad", "png")
    assert (config.require_images, config.examples_per_shard, config.workers, config.ocr_min_conf,
            config.balance_tolerance, config.max_failure_rate) == (False, 10, 3, 0.7, 0.1, 0.005)


def readme_webdataset_snippet() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    found = [block for block in blocks if "wds.WebDataset(" in block]
    assert len(found) == 1, "the README should hold one webdataset snippet"
    return textwrap.dedent(found[0])   # the snippet may sit in a list item


def test_readme_webdataset_snippet_reads_the_shards_without_a_warning(corpus, tmp_path):
    config = corpus[0]
    pack(config)
    work = tmp_path / "user"
    shutil.copytree(config.output_dir, work / "Step_3" / "shards")
    code = readme_webdataset_snippet() + "\nprint(sum(1 for _ in ds))\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""   # what a user sees: no shardshuffle UserWarning (nor any other warning)
    with tarfile.open(config.output_dir / "train" / "shard-00000.tar") as tar:
        examples = sum(name.endswith(".json") for name in tar.getnames())
    assert int(done.stdout) == examples > 0


# ---------------------------------------------------------------- datasets mixed inside every split

PILOT_DATASETS = ("hateful_memes", "mami", "memotion1", "olid", "hatexplain")   # 3 with images, 2 text-only


@pytest.fixture(scope="module")
def pilot_pack_inputs(tmp_path_factory) -> tuple[Path, PackConfig]:
    """The pilot's releases of five datasets through ingest and split: a manifest that lists one
    dataset after another, as ingest writes it."""
    from stages.common import write_json
    from stages.records import load_ocr_index, read_manifest
    from stages.split import make_splits
    from tests.conftest import ingested_pilot

    root = tmp_path_factory.mktemp("mixed")
    manifest, ocr, split_config = ingested_pilot(root, PILOT_DATASETS, 60)
    result = make_splits(list(read_manifest(manifest)), load_ocr_index(ocr), Taxonomy.load(TAXONOMY), split_config,
                         image_root=root)
    write_json(root / "splits.json", result.splits)
    write_json(root / "split_report.json", result.report)
    config = PackConfig(manifest=manifest, ocr=ocr, output_dir=root / "out" / "shards",
                        stats=root / "out" / "stats.json", label_taxonomy=TAXONOMY, splits=root / "splits.json",
                        image=ImageSpec(image_size=32),
                        examples_per_shard=16, workers=1, image_root=root)
    return root, config


def datasets_in_order(shard_dir: Path, split: str, prefix: str) -> list[str]:
    """The dataset of each example of a split's `prefix`-*.tar shards, read in order with plain webdataset."""
    urls = sorted(str(p) for p in (shard_dir / split).glob(f"{prefix}-*.tar"))
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode().to_tuple("json")
    return [meta["dataset"] for meta, in dataset]


def test_every_split_mixes_the_datasets_from_its_first_examples(pilot_pack_inputs):
    root, config = pilot_pack_inputs
    manifest_order = [json.loads(line)["dataset"] for line in config.manifest.read_text().splitlines()]
    assert len(set(manifest_order[:len(manifest_order) // 10])) == 1   # ingest writes one dataset after another
    pack(config)
    for split in ("train", "val", "test"):
        for prefix, expected in (("shard", {"hateful_memes", "mami", "memotion1"}),
                                 ("textonly", {"olid", "hatexplain"})):
            order = datasets_in_order(config.output_dir, split, prefix)
            assert set(order) == expected, (split, prefix)
            first = order[:max(len(order) // 10, 8)]   # the first 10% (at least 8: val and test are small)
            assert len(set(first)) >= 2, f"{split}/{prefix}: the first {len(first)} examples hold only {set(first)}"
    train = datasets_in_order(config.output_dir, "train", "shard")
    assert set(train[:len(train) // 10]) == {"hateful_memes", "mami", "memotion1"}
    assert len(list((config.output_dir / "train").glob("shard-*.tar"))) >= 5   # read across several shards


def test_the_shuffle_is_seeded_and_independent_of_the_worker_count(pilot_pack_inputs):
    root, config = pilot_pack_inputs
    runs = {}
    for name, seed, workers in (("a", 0, 1), ("b", 0, 2), ("c", 0, 2), ("d", 1, 2)):
        out = root / name
        pack(replace(config, output_dir=out / "shards", stats=out / "stats.json", seed=seed, workers=workers))
        runs[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert runs["a"] == runs["b"] == runs["c"]
    assert runs["d"] != runs["a"]   # another seed, another order
    assert datasets_in_order(root / "d" / "shards", "train", "shard") != datasets_in_order(root / "a" / "shards",
                                                                                            "train", "shard")


def leaf_count(tree: dict) -> int:
    return sum(leaf_count(v) if isinstance(v, dict) else 1 for v in tree.values())


def test_each_data_stage_writes_small_headline_metrics_beside_its_full_report(pilot_pack_inputs):
    """What `dvc metrics show` shows per file: a few numbers (<= 40), consistent with the full report."""
    from stages import ingest as ingest_stage
    from stages.pack_stats import headline as pack_headline
    from stages.split_report import headline as split_headline

    root, config = pilot_pack_inputs
    ingest_report = json.loads((root / "ingest_report.json").read_text())
    ingest_metrics = json.loads((root / "metrics" / "ingest.json").read_text())
    assert ingest_metrics["examples"] == ingest_report["examples"]
    assert set(ingest_metrics["datasets"]) == set(PILOT_DATASETS)
    assert {name: d["examples"] for name, d in ingest_metrics["datasets"].items()} == {
        name: sum(d["examples"].values()) for name, d in ingest_report["datasets"].items()}
    assert "skipped_rows" not in ingest_metrics and ingest_stage.SKIP_ROWS_KEPT

    split_report = json.loads((root / "split_report.json").read_text())
    split_metrics = split_headline(split_report)
    assert split_metrics["splits"] == split_report["totals"]["per_split"]
    assert split_metrics["checks_ok"] == {name: check["ok"] for name, check in split_report["checks"].items()}

    out = root / "headline"
    stats = pack(replace(config, output_dir=out / "shards", stats=out / "stats.json", metrics=out / "pack.json"))
    pack_metrics = json.loads((out / "pack.json").read_text())
    assert pack_metrics == pack_headline(stats) and pack_metrics["packed_examples"] == stats["packed_examples"]
    assert {name: s["examples"] for name, s in pack_metrics["splits"].items()} == {
        name: s["examples"] for name, s in stats["splits"].items()}
    for full, small in ((ingest_report, ingest_metrics), (split_report, split_metrics), (stats, pack_metrics)):
        assert leaf_count(small) <= 40 and leaf_count(small) < leaf_count(full)
