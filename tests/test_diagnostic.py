"""Evaluation-only datasets end to end on a small text-only pilot (HateXplain, OLID, HateCheck):
ingest -> split -> pack -> train_text as functions in a temp folder with a tiny model. HateCheck goes
whole to the `diagnostic` split, is counted apart, never reaches train/val/test, training or class
weights (checked by id), and the expert's metrics report accuracy per functionality / group / class."""
from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from stages import training
from stages.common import REPO_ROOT, load_params, project_path, write_json
from stages.records import load_ocr_index, make_id, read_manifest
from stages.shards import INDEX, iter_examples, write_index
from stages.taxonomy import Taxonomy
from tests.test_train_text import outputs, run, tiny_deberta  # noqa: F401 - fixture

TAXONOMY = project_path("split", "label_taxonomy")
DATASETS = ("hatexplain", "olid", "hatecheck")
HATE, OFFENSIVE = training.Tasks.read(["abuse_hate"]), training.Tasks.read(["offensive"])
GROUP = {"women": "women", "trans people": "lgbtq", "gay people": "lgbtq", "black people": "black",
         "disabled people": "disabled", "Muslims": "muslim", "immigrants": "refugee_immigrant", "": "(none)"}


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> Path:
    from stages.config import build
    from stages.ingest import ingest
    from stages.pack import PackConfig, pack
    from stages.pilot import PilotConfig, write_pilot
    from stages.split import PARTS, make_splits

    root = tmp_path_factory.mktemp("diagnostic")
    pilot = write_pilot(PilotConfig(out=root / "pilot", examples_per_dataset=60, datasets=DATASETS))
    manifest, ocr = root / "m.jsonl", root / "o.jsonl"
    ingest({name: pilot.out / name for name in DATASETS}, manifest, ocr, root=root)
    config, _ = build(PARTS, load_params(None, REPO_ROOT / "params.yaml"),
                      overrides={"split.workers": 1, "split.manifest": manifest, "split.ocr": ocr})
    assert config.diagnostic_datasets == ("hatecheck",)   # the default params
    result = make_splits(list(read_manifest(manifest)), load_ocr_index(ocr), Taxonomy.load(TAXONOMY), config)
    write_json(root / "splits.json", result.splits)
    write_json(root / "split_report.json", result.report)
    pack(PackConfig(manifest=manifest, ocr=ocr, output_dir=root / "shards", stats=root / "stats.json",
                    label_taxonomy=TAXONOMY, splits=root / "splits.json", workers=1, image_root=root))
    return root


def pilot_cases(root: Path) -> dict[str, dict]:
    """The pilot's HateCheck file read with the csv module: id -> row."""
    with open(root / "pilot" / "hatecheck" / "test_suite_cases.csv", encoding="utf-8", newline="") as f:
        return {make_id("hatecheck", "test", row["case_id"]): row for row in csv.DictReader(f)}


def shard_ids(root: Path, split: str) -> set[str]:
    return {example.id for example in iter_examples(root / "shards", split, with_images=False)}


def test_diagnostic_cases_get_their_own_split_and_are_counted_apart(packed):
    cases = pilot_cases(packed)
    splits = json.loads((packed / "splits.json").read_text())
    assert len(cases) == 60
    assert {i for i, s in splits.items() if s == "diagnostic"} == set(cases)
    report = json.loads((packed / "split_report.json").read_text())
    diagnostic = report["diagnostic"]
    gold = Counter(row["label_gold"] for row in cases.values())
    assert diagnostic["examples"] == 60 and diagnostic["counts"] == {
        "hatecheck": {"abuse_hate=0": gold["non-hateful"], "abuse_hate=1": gold["hateful"]}}
    # the training splits' totals, counts and balance pools never see them
    assert sum(report["totals"]["per_split"].values()) == len(splits) - 60 == report["totals"]["assigned"]
    assert set(report["totals"]["per_split"]) == {"train", "val", "test"}
    assert "hatecheck" not in report["counts"]
    assert not any(pool.startswith("hatecheck") for pool in report["checks"]["balance"]["pools"])
    # a diagnostic text also in train/val/test is reported: here the pilot's shared vocabulary repeats some
    from stages.text import comparison_key
    training_texts = {comparison_key(r.text_raw, compatibility=True) for r in read_manifest(packed / "m.jsonl")
                      if splits.get(r.id) in ("train", "val", "test")}
    overlap = [i for i, row in cases.items() if comparison_key(row["test_case"], compatibility=True) in training_texts]
    assert diagnostic["text_in_training_splits"]["count"] == len(overlap) > 0

    stats = json.loads((packed / "stats.json").read_text())
    assert set(stats["splits"]) == {"train", "val", "test"}
    assert stats["diagnostic"]["examples"] == stats["diagnostic"]["text_only"] == 60
    assert stats["diagnostic"]["datasets"] == {"hatecheck": 60}
    assert stats["diagnostic"]["shards"] == {"image": 0, "textonly": 1}
    assert stats["datasets"]["hatecheck"] == {"train": 0, "val": 0, "test": 0, "text_only": 60, "failed": 0,
                                              "skipped": 0, "excluded": 0, "diagnostic": 60}
    assert stats["packed_examples"] == sum(s["examples"] for s in stats["splits"].values()) + 60
    assert not [pool for pool in stats["balance"]["pools"] if pool.startswith("hatecheck")]   # never compared
    assert sorted(p.name for p in (packed / "shards" / "diagnostic").iterdir()) == ["textonly-00000.tar"]
    assert shard_ids(packed, "diagnostic") == set(cases)
    for split in ("train", "val", "test"):
        assert not shard_ids(packed, split) & set(cases), split


@pytest.fixture(scope="module")
def trained(packed, tiny_deberta, tmp_path_factory):  # noqa: F811 - the imported fixture
    paths = dataclasses.replace(outputs(tmp_path_factory.mktemp("text")), trace_ids=packed / "trace")
    return paths, run(packed / "shards", paths, tiny_deberta, epochs=1)


def test_no_diagnostic_example_is_trained_on_or_weighs_in(packed, trained):
    paths, metrics = trained
    cases = set(pilot_cases(packed))
    traced = {line for f in (packed / "trace").glob("*.txt") for line in f.read_text().split()}
    assert traced and not traced & cases      # every id the training loop read
    assert all(name.startswith("train-") for name in {f.name for f in (packed / "trace").glob("*.txt")})
    train = training.read_split(packed / "shards", "train", ("image", "textonly"), HATE)
    assert metrics["class_weights"] == training.class_weights(train.class_counts)
    assert set(metrics["examples"]) == {"train", "val", "test"}
    assert "hatecheck" not in metrics["val"]["by_dataset"] and "hatecheck" not in metrics["test"]["by_dataset"]


def test_diagnostic_report_per_functionality_group_and_class(packed, trained):
    paths, metrics = trained
    cases = pilot_cases(packed)
    section = metrics["diagnostic"]
    rows = [json.loads(line) for line in paths.predictions.read_text().splitlines()]
    diagnostic_rows = {r["id"]: r for r in rows if r["split"] == "diagnostic"}
    assert set(diagnostic_rows) == set(cases)
    assert {r["split"] for r in rows} == {"val", "test", "diagnostic"}

    # the expected report, recomputed from the pilot csv and the predictions file
    tallies = defaultdict(lambda: [0, 0])   # key -> [cases, correct]
    gold_of = defaultdict(set)
    for case_id, row in cases.items():
        label = int(row["label_gold"] == "hateful")
        prediction = diagnostic_rows[case_id]
        assert prediction["labels"] == {"abuse_hate": label}
        right = int(prediction["probs"]["abuse_hate"] > 0.5) == label
        gold_of[row["functionality"]].add("abuse_hate" if label else "not_abuse_hate")
        for key in ("all", f"class{label}", ("f", row["functionality"]), ("g", GROUP[row["target_ident"]])):
            tallies[key][0] += 1
            tallies[key][1] += right

    def accuracy(key) -> float:
        return pytest.approx(tallies[key][1] / tallies[key][0], abs=1e-6)

    assert section["datasets"] == ["hatecheck"] and section["cases"] == 60
    assert section["accuracy"] == accuracy("all")
    assert section["accuracy_abuse_hate"] == accuracy("class1")
    assert section["accuracy_not_abuse_hate"] == accuracy("class0")
    functionalities = sorted(gold_of)
    assert len(functionalities) == 6 and list(section["by_functionality"]) == functionalities
    for name in functionalities:
        entry = section["by_functionality"][name]
        assert entry == {"gold": gold_of[name].pop(), "cases": tallies[("f", name)][0],
                         "accuracy": accuracy(("f", name))}
        assert entry["gold"] == ("abuse_hate" if name.endswith("_h") else "not_abuse_hate")
    groups = {key[1] for key in tallies if key[0] == "g"}
    assert set(section["by_target_group"]) == groups and "(none)" in groups   # target_obj_nh has no group
    for group in groups:
        assert section["by_target_group"][group] == {"cases": tallies[("g", group)][0],
                                                     "accuracy": accuracy(("g", group))}
    # the DVCLive bar plot: one bar per functionality, as in the metrics
    bars = json.loads((paths.live_dir / "plots" / "custom" / "diagnostic_functionality.json").read_text())
    assert bars == [{"functionality": name, **section["by_functionality"][name]} for name in functionalities]


def write_diagnostic_split(root: Path, n: int) -> list[str]:
    """A text-only diagnostic split as pack writes it: root/diagnostic/textonly-00000.tar of HateCheck-like cases."""
    import webdataset as wds

    from stages.records import safe_key
    (root / "diagnostic").mkdir(parents=True)
    ids = [make_id("hatecheck", "test", i) for i in range(n)]
    with wds.TarWriter(str(root / "diagnostic" / "textonly-00000.tar"), mtime=0) as sink:
        for i, example_id in enumerate(ids):
            meta = {"id": example_id, "key": safe_key(example_id), "dataset": "hatecheck", "split": "diagnostic",
                    "labels": {"abuse_hate": i % 2, "offensive": None, "target_type": None, "target_group": []},
                    "aux": {"functionality": "slur_h" if i % 2 else "profanity_nh"}}
            sink.write({"__key__": meta["key"], "txt": f"case {i}".encode(), "json": json.dumps(meta).encode()})
    index = json.loads((root / INDEX).read_text()) if (root / INDEX).is_file() else {}
    write_index(root, {**index, "diagnostic/textonly-00000.tar": n})   # as pack lists it
    return ids


def test_without_a_diagnostic_split_metrics_have_no_section(tmp_path):
    from tests.test_training import write_shards
    write_shards(tmp_path, {"train": 8, "val": 4, "test": 4})
    assert training.read_diagnostic(tmp_path, ("image", "textonly"), HATE) == (None, None)
    assert training.diagnostic_report(None, None, None, None, None) is None


def test_read_diagnostic_per_expert_kind_and_task(tmp_path):
    write_diagnostic_split(tmp_path, 10)
    info, why = training.read_diagnostic(tmp_path, ("image", "textonly"), HATE)
    assert why is None and info.labeled == 10 and info.class_counts == (5, 5) and info.name == "diagnostic"
    assert training.read_diagnostic(tmp_path, ("image", "textonly"), OFFENSIVE) == (
        None, "no diagnostic example has a 'offensive' label (10 null)")
    assert training.read_diagnostic(tmp_path, ("image",), HATE) == (
        None, "text-only suite(s) (hatecheck): this expert reads image shards only")
