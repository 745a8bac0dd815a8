"""Pack on hostile or awkward Step 2 input: images out of the allowed folders, huge captions, examples
with neither text nor image when images are not required; and the one balance check that split and
pack share. Each fixture is written here; the tests assert exact counts, reasons and messages.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from stages import balance
from stages import pack as pack_stage
from stages import split as split_stage
from stages.common import load_params, project_path
from stages.config import build, parse
from stages.images import ImageSpec
from stages.pack import PackConfig, PackFailed, pack
from tests.test_images import write_rgb

REPO_ROOT = Path(__file__).resolve().parent.parent
TAXONOMY = project_path("split", "label_taxonomy")
OLID_NOT = {"subtask_a": "NOT", "subtask_b": "NULL", "subtask_c": "NULL"}
SPLIT_INPUTS = {"split.manifest": "m.jsonl", "split.ocr": "o.jsonl"}   # required flags; make_splits takes the records
PACK_INPUTS = ["--manifest", "m.jsonl", "--ocr", "o.jsonl", "--label-taxonomy", "t.json", "--splits", "s.json"]


def meme(example_id: str, image: str | None, text: str | None = None, split: str = "train") -> dict:
    return {"id": example_id, "dataset": "hateful_memes", "split": split, "image_path": image, "text_raw": text,
            "labels_raw": {"label": 0}}


def tweet(example_id: str, text: str) -> dict:
    return {"id": example_id, "dataset": "olid", "split": "train", "image_path": None, "text_raw": text,
            "labels_raw": OLID_NOT}


def config_for(root: Path, records: list[dict], **options) -> PackConfig:
    """A user's own Step 2 files (no OCR), every record in train."""
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "ocr.jsonl").write_text("")
    (root / "splits.json").write_text(json.dumps({r["id"]: "train" for r in records}))
    options = {"image": ImageSpec(image_size=16), "workers": 1, "image_root": root, "max_failure_rate": 0.99, **options}
    return PackConfig(manifest=root / "manifest.jsonl", ocr=root / "ocr.jsonl", output_dir=root / "out" / "shards",
                      stats=root / "out" / "stats.json", label_taxonomy=TAXONOMY, splits=root / "splits.json",
                      **options)


# ---------------------------------------------------------------- images out of the allowed folders


def test_images_resolving_outside_image_dirs_are_unsafe_path_failures(tmp_path):
    data = tmp_path / "data"
    secret = write_rgb((tmp_path / "private").mkdir() or tmp_path / "private" / "secret.jpg")
    good = write_rgb((data / "img").mkdir(parents=True) or data / "img" / "good.jpg")
    (data / "img" / "evil.jpg").symlink_to(secret)            # a symlink out of the allowed folder
    (data / "img" / "alias.jpg").symlink_to(good)             # a symlink inside it: fine
    (data / "linked").symlink_to(tmp_path / "private")        # a symlinked folder out of it
    records = [meme("ok", "data/img/good.jpg"), meme("alias", "data/img/alias.jpg"),
               meme("evil", "data/img/evil.jpg"), meme("climb", "data/img/../../private/secret.jpg"),
               meme("absolute", str(secret)), meme("via_folder", "data/linked/secret.jpg")]
    config = config_for(tmp_path, records, image_dirs=(Path("data"),))
    stats = pack(config)
    assert stats["packed_examples"] == 2 and stats["failed_examples"] == 4
    entry = stats["failures"]["unsafe_path"]
    assert entry["count"] == 4
    assert sorted(e["id"] for e in entry["examples"]) == ["absolute", "climb", "evil", "via_folder"]
    assert entry["examples"][0]["detail"] == (f"resolves to {secret}, outside {data} "
                                              "(add its folder to releases.image_dirs if you trust it)")
    with pytest.raises(PackFailed, match=r"unsafe_path: 4 e\.g\. \w+ \(resolves to "):
        pack(replace(config, max_failure_rate=0.5, output_dir=tmp_path / "gated", stats=tmp_path / "gated.json"))
    assert not (tmp_path / "gated").exists() and not (tmp_path / "gated.json").exists()


def test_image_dirs_come_from_params_relative_to_the_image_root(tmp_path):
    params = load_params(None, REPO_ROOT / "params.yaml")
    params["releases"]["image_dirs"] = ["Datasets", "/srv/memes"]
    params["pack"]["max_text_chars"] = 50
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (config,), _ = parse("pack", "", pack_stage.PARTS, ["--params", str(tmp_path / "params.yaml"), "--image-root",
                                                        str(tmp_path), *PACK_INPUTS])
    assert config.allowed_image_dirs == [tmp_path / "Datasets", Path("/srv/memes")]
    assert config.max_text_chars == 50
    assert load_params("releases", REPO_ROOT / "params.yaml")["image_dirs"] == ["Datasets", "data/pilot"]


# ---------------------------------------------------------------- text length cap


def test_a_ten_megabyte_caption_is_cut_to_max_text_chars_and_counted(tmp_path):
    huge = "word " * 2_000_000   # 10 MB
    config = config_for(tmp_path, [tweet("huge", huge), tweet("short", "just a tweet")], max_text_chars=100)
    stats = pack(config)
    assert stats["packed_examples"] == 2
    assert stats["text"]["max_text_chars"] == 100
    assert stats["text"]["truncated"] == {"count": 1, "examples": [
        {"id": "huge", "detail": "text cut to 100 characters per part"}]}
    from stages.shards import iter_examples
    texts = {ex.id: ex.text for ex in iter_examples(config.output_dir, "train", with_images=False)}
    assert texts == {"huge": "[CAP] " + ("word " * 20).strip() + " [/CAP] <lang=en>",
                     "short": "[CAP] just a tweet [/CAP] <lang=en>"}


# ---------------------------------------------------------------- neither text nor image


def test_no_text_and_no_image_file_is_a_counted_skip_outside_the_failure_gate(tmp_path):
    (tmp_path / "img").mkdir()
    records = [meme("text_only", "img/missing1.png", text="words survive"),
               meme("nothing_1", "img/missing2.png"), meme("nothing_2", "img/missing3.png", text="   "),
               meme("image", str(write_rgb(tmp_path / "img" / "there.jpg")))]
    config = config_for(tmp_path, records, require_images=False, max_failure_rate=0.0)
    stats = pack(config)
    assert (stats["packed_examples"], stats["failed_examples"], stats["skipped_examples"]) == (2, 0, 2)
    assert stats["failure_rate"] == 0.0
    skipped = stats["skipped"]["no_text_no_image"]   # examples in packing order (pack.seed's shuffle)
    assert skipped["count"] == 2 and sorted(skipped["examples"], key=lambda e: e["id"]) == [
        {"id": "nothing_1", "detail": "no text, and the image file does not exist"},
        {"id": "nothing_2", "detail": "no text, and the image file does not exist"}]
    assert stats["missing_image_packed_text_only"]["count"] == 1
    assert stats["datasets"]["hateful_memes"]["skipped"] == 2
    console = Console(file=io.StringIO(), width=200)
    pack_stage.print_summary(stats, console)
    assert "no_text_no_image (skipped, not a failure) │ 2" in console.file.getvalue()
    # images required: the same rows are failures, and the gate stops the stage
    with pytest.raises(PackFailed, match=r"missing_image: 3"):
        pack(replace(config, require_images=True, output_dir=tmp_path / "o2", stats=tmp_path / "s2.json"))


# ---------------------------------------------------------------- one balance check


def test_split_and_pack_report_the_same_balance_check_on_the_pilot(tmp_path, capsys):
    from stages.ingest import ingest
    from stages.pilot import PilotConfig, write_pilot
    from stages.records import load_ocr_index, read_manifest
    from stages.taxonomy import Taxonomy

    pilot = write_pilot(PilotConfig(out=tmp_path / "pilot"))   # the default pilot (60 per dataset)
    ingest({name: pilot.out / name for name in pilot.counts}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    params = load_params(None, REPO_ROOT / "params.yaml")
    split_config = build(split_stage.PARTS, params, {"split.workers": 1, **SPLIT_INPUTS})[0]
    result = split_stage.make_splits(list(read_manifest(tmp_path / "m.jsonl")), load_ocr_index(tmp_path / "o.jsonl"),
                                     Taxonomy.load(TAXONOMY), split_config, image_root=tmp_path)
    (tmp_path / "splits.json").write_text(json.dumps(result.splits))
    config = PackConfig(manifest=tmp_path / "m.jsonl", ocr=tmp_path / "o.jsonl", output_dir=tmp_path / "shards",
                        stats=tmp_path / "stats.json", label_taxonomy=TAXONOMY, splits=tmp_path / "splits.json",
                        image=ImageSpec(image_size=16), workers=1, image_root=tmp_path,
                        official=params["releases"]["official"],
                        balance_tolerance=params["split"]["balance_tolerance"],
                        balance_min_examples=params["split"]["balance_min_examples"])
    stats = pack(config)
    assert stats["failed_examples"] == 0 and stats["packed_examples"] == len(result.splits)
    split_check = result.report["checks"]["balance"]
    assert stats["balance"] == split_check   # the same check on the same examples: the same verdict
    assert {"mami/carve", "memotion1/carve", "memotion2/carve", "olid/carve"} <= set(split_check["pools"])
    line = balance.balance_line(split_check)
    split_stage.print_summary(result)
    assert line in capsys.readouterr().out.splitlines()
    console = Console(file=io.StringIO(), width=80)
    pack_stage.print_summary(stats, console)
    assert line in console.file.getvalue().splitlines()


def test_balance_check_judges_only_created_parts_with_enough_labels():
    from collections import Counter
    tally = {"olid/carve": {"train": Counter({"offensive=1": 60, "offensive=0": 140, "unlabeled": 9}),
                            "val": Counter({"offensive=1": 10, "offensive=0": 10}),
                            "test": Counter({"offensive=1": 3, "offensive=0": 2})}}
    report, warnings = balance.balance_check(tally, tolerance=0.05, min_examples=20)
    val, test = report["pools"]["olid/carve"]["splits"]["val"], report["pools"]["olid/carve"]["splits"]["test"]
    assert report["pools"]["olid/carve"]["overall"] == {"offensive=0": 0.6756, "offensive=1": 0.3244}  # of 225
    assert (val["n"], val["judged"], val["ok"], val["max_deviation"]) == (20, True, False, 0.1756)
    assert (test["n"], test["judged"], test["ok"]) == (5, False, True)
    assert not report["ok"]
    assert warnings == ["balance olid/carve: class offensive=0 is 50.0% of val vs 67.6% overall (tolerance +-5%)"]
    assert balance.pool_of("olid", "train", {"olid": {"train": "carve"}}) == "olid/carve"
    assert balance.pool_of("hateful_memes", "dev_seen", {"hateful_memes": {"dev_seen": "val"}}) is None
    assert balance.pool_of("hatexplain", None, {}) == "hatexplain/create"


# ---------------------------------------------------------------- thin evaluation parts


def test_real_hateful_memes_test_part_without_labels_is_warned_about(real_dataset, tmp_path, caplog, capsys):
    from stages.ingest import ingest
    from stages.records import load_ocr_index, read_manifest
    from stages.taxonomy import Taxonomy

    ingest({"hateful_memes": real_dataset("hateful_memes")}, tmp_path / "m.jsonl", tmp_path / "o.jsonl", tmp_path)
    split_config = build(split_stage.PARTS, load_params(None, REPO_ROOT / "params.yaml"),
                         {"split.workers": 1, **SPLIT_INPUTS})[0]
    with caplog.at_level(logging.WARNING):
        result = split_stage.make_splits(list(read_manifest(tmp_path / "m.jsonl")),
                                         load_ocr_index(tmp_path / "o.jsonl"), Taxonomy.load(TAXONOMY),
                                         split_config, image_root=tmp_path)
    coverage = result.report["eval_labeled"]
    # test = test_unseen (2000 memes, no labels); val = dev_seen + dev_unseen's own memes
    assert coverage["min_eval_labeled"] == 30
    assert coverage["counts"]["hateful_memes"]["abuse_hate"]["test"] == 0
    assert coverage["counts"]["hateful_memes"]["abuse_hate"]["val"] > 500
    assert coverage["below"] == ["hateful_memes/test/abuse_hate: 0"]
    message = ("1 evaluation parts have fewer than 30 labelled examples (split.min_eval_labeled); their "
               "per-dataset metrics mean little: hateful_memes/test/abuse_hate: 0")
    assert message in result.report["warnings"] and message in caplog.text
    split_stage.print_summary(result)   # and on the console, after the table
    assert ("evaluation parts under 30 labelled examples: hateful_memes/test/abuse_hate: 0"
            in capsys.readouterr().out.splitlines())


def test_eval_parts_under_the_minimum_are_listed_per_dataset_field_and_split():
    from stages.records import ManifestRecord
    from stages.taxonomy import Taxonomy

    def olid_row(n: int, split: str) -> ManifestRecord:
        return ManifestRecord(id=f"olid_{split}_{n}", dataset="olid", split=split, image_path=None,
                              text_raw=f"tweet number {n} {split}", labels_raw=OLID_NOT)
    records = [olid_row(n, "train") for n in range(40)] + [olid_row(n, "test") for n in range(12)]
    config = split_stage.SplitConfig(official={"olid": {"train": "train", "test": "test"}}, min_eval_labeled=12)
    report = split_stage.make_splits(records, {}, Taxonomy.load(TAXONOMY), config, image_root=Path(".")).report
    assert report["eval_labeled"]["counts"] == {"olid": {"offensive": {"val": 0, "test": 12}}}
    assert report["eval_labeled"]["below"] == ["olid/val/offensive: 0"]   # OLID has no abuse_hate: not listed
