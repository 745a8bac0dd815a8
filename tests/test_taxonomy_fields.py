"""Unified fields are declared once, in the taxonomy: a toy field added to a copy of
Step_3/label_taxonomy.json (and nowhere else) reaches the labels of packed examples, a head of a
multi-head expert, Step_3/stats.json and the split report, through the real split and pack stages on
a small pilot."""
from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import pytest

from stages.common import project_path
from stages.taxonomy import Taxonomy, TaxonomyError

TAXONOMY = project_path("split", "label_taxonomy")
TOY = "toy_insult"
PILOT = ("olid", "hateful_memes")   # olid annotates the toy field (text-only), hateful_memes does not (images)
OLID_TOY = {"OFF": 1, "NOT": 0}


def toy_spec() -> dict:
    """The real taxonomy plus one binary field: olid's level A mapped to it, every other dataset null."""
    spec = json.loads(TAXONOMY.read_text(encoding="utf-8"))
    spec["fields"][TOY] = {"type": "binary", "values": [0, 1], "description": "toy: an insult (olid OFF)"}
    for dataset in spec["datasets"].values():
        dataset["labels"][TOY] = {"rule": "const", "value": None, "notes": "not annotated"}
    spec["datasets"]["olid"]["labels"][TOY] = {"rule": "map", "from": "subtask_a", "map": dict(OLID_TOY),
                                             "notes": "toy"}
    return spec


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> dict:
    """A two-dataset pilot through ingest, split and pack with the toy taxonomy."""
    from stages.images import ImageSpec
    from stages.pack import PackConfig, pack
    from stages.split import SplitPaths, split
    from tests.conftest import ingested_pilot

    root = tmp_path_factory.mktemp("toy")
    taxonomy = root / "label_taxonomy.json"
    taxonomy.write_text(json.dumps(toy_spec(), indent=1), encoding="utf-8")
    manifest, ocr, split_config = ingested_pilot(root, PILOT, 40)
    split(split_config, SplitPaths(manifest=manifest, ocr=ocr, label_taxonomy=taxonomy, splits=root / "splits.json",
                                   report=root / "split_report.json", image_root=root))
    stats = pack(PackConfig(manifest=manifest, ocr=ocr, output_dir=root / "shards", stats=root / "stats.json",
                            label_taxonomy=taxonomy, splits=root / "splits.json", image=ImageSpec(image_size=32),
                            examples_per_shard=16, workers=1, image_root=root))
    raw = {json.loads(line)["id"]: json.loads(line)["labels_raw"] for line in manifest.read_text().splitlines()}
    return {"root": root, "taxonomy": taxonomy, "stats": stats, "raw": raw,
            "splits": json.loads((root / "splits.json").read_text()),
            "report": json.loads((root / "split_report.json").read_text())}


def packed(root: Path) -> dict[str, tuple[str, dict]]:
    from stages.shards import iter_examples
    return {ex.id: (split, ex.meta) for split in ("train", "val", "test")
            for ex in iter_examples(root / "shards", split, with_images=False)}


def expected_toy(meta: dict, raw: dict) -> int | None:
    return OLID_TOY[raw[meta["id"]]["subtask_a"]] if meta["dataset"] == "olid" else None


def test_the_toy_field_is_in_the_labels_of_packed_examples(toy_run):
    examples = packed(toy_run["root"])
    assert {meta["dataset"] for _, meta in examples.values()} == set(PILOT)
    for example_id, (_, meta) in examples.items():
        assert meta["labels"][TOY] == expected_toy(meta, toy_run["raw"]), example_id
    olid = Counter(meta["labels"][TOY] for _, meta in examples.values() if meta["dataset"] == "olid")
    assert olid[0] and olid[1] and None not in olid


def test_the_toy_field_is_counted_in_stats_json(toy_run):
    examples = packed(toy_run["root"])
    on_disk = json.loads((toy_run["root"] / "stats.json").read_text())
    assert on_disk == json.loads(json.dumps(toy_run["stats"]))
    for split in ("train", "val", "test"):
        counted = Counter("unlabeled" if meta["labels"][TOY] is None else str(meta["labels"][TOY])
                          for s, meta in examples.values() if s == split)
        assert on_disk["splits"][split]["classes"][TOY] == dict(counted), split
    assert set(on_disk["splits"]["train"]["classes"]) == {"abuse_hate", "offensive", "target_type", "target_group",
                                                            TOY}


def test_the_toy_field_is_in_the_split_reports_labelled_evaluation_counts(toy_run):
    counts = toy_run["report"]["eval_labeled"]["counts"]
    olid_in = Counter(split for example_id, split in toy_run["splits"].items() if example_id.startswith("olid"))
    assert counts["olid"][TOY] == {"val": olid_in["val"], "test": olid_in["test"]}
    assert olid_in["val"] and olid_in["test"]
    assert TOY not in counts["hateful_memes"] and "abuse_hate" in counts["hateful_memes"]


def test_the_toy_field_gets_a_head_and_a_masked_loss(toy_run):
    import torch

    from stages.heads import MISSING, MultiHeadLoss
    from stages.training.config import TrainConfig, label_maps

    tasks = TrainConfig(tasks=["abuse_hate", TOY], label_taxonomy=str(toy_run["taxonomy"])).tasks
    layout = tasks.layout
    assert tasks.single is None and layout.names == ("abuse_hate", TOY)
    assert layout.head(TOY).kind == "binary" and layout.head(TOY).source == "labels"
    assert list(label_maps(tasks)[0].values())[-2:] == [f"{TOY}=not_{TOY}", f"{TOY}={TOY}"]
    plain = TrainConfig(tasks=[TOY], label_taxonomy=str(toy_run["taxonomy"])).tasks
    assert plain.single == TOY and plain.layout is None   # one binary field: a plain binary expert

    metas = [meta for _, meta in packed(toy_run["root"]).values() if meta["labeled"]]
    targets = torch.tensor([layout.encode(meta, meta["id"]) for meta in metas])
    assert targets[:, 1].tolist() == [MISSING if expected_toy(m, toy_run["raw"]) is None
                                      else expected_toy(m, toy_run["raw"]) for m in metas]
    logits = torch.zeros(len(metas), layout.width, requires_grad=True)
    MultiHeadLoss(layout, None, {TOY: 1.0})(logits, targets).backward()
    toy_rows = targets[:, 1] != MISSING
    assert logits.grad[toy_rows][:, 2:].abs().sum() > 0 and logits.grad[~toy_rows][:, 2:].abs().sum() == 0


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["fields"].__setitem__(TOY, {"type": "ordinal"}), "fields.toy_insult: expected an object with `type`"),
    (lambda s: s["fields"][TOY].__setitem__("values", [0, 1, 2]), "fields.toy_insult.values: a binary field's values"),
    (lambda s: s["fields"]["target_type"].__setitem__("values", []), "fields.target_type.values: a categorical field"),
    (lambda s: s["fields"]["target_group"].pop("vocabulary"), "fields.target_group.vocabulary: missing or empty"),
    (lambda s: s["datasets"]["mami"]["labels"].pop(TOY), r"datasets\.mami\.labels: .*missing \['toy_insult'\]"),
    (lambda s: s["datasets"]["olid"]["labels"][TOY]["map"].__setitem__("OFF", 2), "toy_insult values are 0, 1 or null"),
    # declaration order is evaluation order: target_type's conds test target_group, so it must come first
    (lambda s: s["fields"].__setitem__("target_group", s["fields"].pop("target_group")), "earlier unified fields"),
])
def test_field_declarations_are_checked_with_one_line_errors(edit, message):
    spec = toy_spec()
    Taxonomy.from_dict(copy.deepcopy(spec))
    edit(spec)
    with pytest.raises(TaxonomyError, match=message) as err:
        Taxonomy.from_dict(spec, "toy.json")
    assert str(err.value).startswith("toy.json: ") and "\n" not in str(err.value)
