"""A dataset is one module: its spec (stages/releases/<name>.py: SPEC) agrees with the label
taxonomy and params.yaml, and a new dataset needs nothing but a spec and its taxonomy entry."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from stages import pilot, releases
from stages.common import REPO_ROOT, load_params, project_path
from stages.images import ImageSpec
from stages.ingest import ingest
from stages.pack import PackConfig, pack
from stages.pilot import PilotConfig, write_pilot
from stages.pilot.kit import PilotExample, PilotRecipe
from stages.records import ManifestRecord, load_ocr_index, make_id, read_manifest
from stages.releases import DATASETS, DatasetSpec, Example, ReleaseFiles, Skip, csv_table, header_index, table_rows
from stages.shards import iter_examples
from stages.split import SplitConfig, make_splits
from stages.taxonomy import Taxonomy, raw_key

TAXONOMY_FILE = project_path("split", "label_taxonomy")
# Raw fields the adapter passes through unchecked: the taxonomy's `values` are their only check.
UNCHECKED = {"hatecheck": {"functionality"}, "hatexplain": {"annotators[].target"}}


def assert_spec_agrees_with_taxonomy(spec: DatasetSpec, taxonomy: Taxonomy) -> None:
    """The values the adapter lets through are exactly those the taxonomy accepts, and every map
    or vote table of the taxonomy covers exactly them (a cond test reads some of them)."""
    emitted = {name: {raw_key(v) for v in values} for name, values in spec.label_values.items()}
    accepted = taxonomy.raw_values(spec.name)
    for name, values in emitted.items():
        assert accepted.get(name) == values, f"{spec.name}.{name}: adapter {values}, taxonomy {accepted.get(name)}"
    assert set(accepted) - set(emitted) == UNCHECKED.get(spec.name, set()), spec.name
    for kind, name, keys in taxonomy.rule_values(spec.name):
        if name in emitted:
            assert keys == emitted[name] if kind in ("map", "vote") else keys <= emitted[name], (spec.name, kind, name)


@pytest.mark.parametrize("name", DATASETS)
def test_adapter_and_taxonomy_agree_on_raw_label_values(name):
    assert_spec_agrees_with_taxonomy(releases.SPECS[name], Taxonomy.load(TAXONOMY_FILE))


@pytest.mark.parametrize("name", DATASETS)
def test_spec_agrees_with_its_module_and_params(name):
    spec = releases.SPECS[name]
    assert spec.name == name and spec.read.__module__ == f"stages.releases.{name}"
    recipe = pilot.RECIPES[name]
    assert set(recipe.split_slots) <= {*spec.splits, "none"}  # "none": in no original split
    assert sum(recipe.split_slots.values()) == 20  # a block of the pilot
    params = {group: load_params(group, REPO_ROOT / "params.yaml") for group in ("ingest", "split", "releases")}
    official = params["releases"]["official"]
    assert name in params["ingest"]["datasets"]
    if name in params["split"]["diagnostic_datasets"]:
        assert name not in official
    else:
        assert set(spec.splits) <= set(official[name])  # every original split is mapped


def test_params_name_only_registered_datasets():
    for group, key in (("ingest", "datasets"), ("releases", "official")):
        assert set(load_params(group, REPO_ROOT / "params.yaml")[key]) <= set(DATASETS), f"{group}.{key}"


def test_a_dataset_is_registered_once():
    with pytest.raises(ValueError, match="'olid' is registered twice"):
        releases.register(releases.SPECS["olid"])


# ---------------------------------------------------------------- an eighth dataset, from here

TOY_FILE = "verdicts.csv"
TOY_VALUES = {"verdict": frozenset({"yes", "no"})}


def read_toy(folder: Path):
    files = ReleaseFiles(folder, [TOY_FILE])
    files.require_any([TOY_FILE])
    path = files.file(TOY_FILE)
    header, rows = csv_table(path)
    col = header_index(path, header, ["id", "text", "verdict", "split"])
    for row in table_rows(path, rows, len(col), col["id"], {"verdict": col["verdict"]}, TOY_VALUES):
        if isinstance(row, Skip):
            yield row
            continue
        split = row.fields[col["split"]]
        record = ManifestRecord(id=make_id("toy", split, row.id), dataset="toy", split=split, image_path=None,
                                text_raw=row.fields[col["text"]], labels_raw=row.labels)
        yield Example(record, None, f"{path}:{row.line}")


def write_toy(folder: Path, rows, counts: Counter) -> None:
    folder.mkdir(parents=True)
    with open(folder / TOY_FILE, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "text", "verdict", "split"])
        for ex in rows:
            ex: PilotExample
            writer.writerow([ex.index, ex.text, "yes" if ex.abusive else "no", ex.split])
            counts[ex.split] += 1


TOY = DatasetSpec("toy", read_toy, ("train", "test"), TOY_VALUES)
TOY_PILOT = PilotRecipe(split_slots={"train": 16, "test": 4}, abusive_share=0.5, write=write_toy)
TOY_TAXONOMY = {
    "raw_fields": {"verdict": {"values": ["yes", "no"]}},
    "labels": {"abuse_hate": {"rule": "map", "from": "verdict", "map": {"yes": 1, "no": 0}},
               "offensive": {"rule": "map", "from": "verdict", "map": {"yes": 1, "no": 0}},
               "target_group": {"rule": "const", "value": None},
               "target_type": {"rule": "const", "value": None}},
}


@pytest.fixture
def toy_registered(monkeypatch, tmp_path) -> Path:
    """The toy registered for this test only, and a copy of the taxonomy with its entry."""
    monkeypatch.setattr(releases, "SPECS", dict(releases.SPECS))
    releases.register(TOY)
    monkeypatch.setitem(pilot.RECIPES, "toy", TOY_PILOT)
    taxonomy = json.loads(TAXONOMY_FILE.read_text(encoding="utf-8"))
    taxonomy["datasets"]["toy"] = TOY_TAXONOMY
    path = tmp_path / "label_taxonomy.json"
    path.write_text(json.dumps(taxonomy), encoding="utf-8")
    return path


def test_a_new_dataset_is_one_spec_plus_its_taxonomy_entry(toy_registered, tmp_path):
    taxonomy = Taxonomy.load(toy_registered)
    assert_spec_agrees_with_taxonomy(TOY, taxonomy)
    pilot = write_pilot(PilotConfig(out=tmp_path / "pilot", examples_per_dataset=80, datasets=("olid", "toy")))
    assert pilot.counts["toy"] == {"train": 64, "test": 16}
    work = tmp_path / "work"
    ingested = ingest({name: pilot.out / name for name in pilot.counts}, work / "m.jsonl", work / "o.jsonl",
                      root=tmp_path)
    assert ingested.counts["toy"] == {"train": 64, "test": 16} and not ingested.skips
    records = list(read_manifest(work / "m.jsonl"))
    assert [r.dataset for r in records][-80:] == ["toy"] * 80  # registered after the package's datasets
    official = {"olid": {"train": "carve", "test": "test"}, "toy": {"train": "carve", "test": "test"}}
    result = make_splits(records, load_ocr_index(work / "o.jsonl"), taxonomy,
                         SplitConfig(official=official, workers=1), image_root=tmp_path)
    toy_splits = {key: split for key, split in result.splits.items() if key.startswith("toy_")}
    assert set(toy_splits.values()) == {"train", "val", "test"}
    dropped = sum(n for part, n in result.report["exact_duplicates"]["by_dataset_split"].items()
                  if part.startswith("toy/"))
    assert len(toy_splits) == 80 - dropped > 60  # the pilot's planted copies are dropped
    (work / "splits.json").write_text(json.dumps(result.splits), encoding="utf-8")
    pack(PackConfig(manifest=work / "m.jsonl", ocr=work / "o.jsonl", output_dir=work / "shards",
                    stats=work / "stats.json", label_taxonomy=toy_registered, splits=work / "splits.json",
                    image=ImageSpec(image_size=32), official=official, workers=1, image_root=tmp_path))
    verdicts = {r.id: r.labels_raw["verdict"] for r in records if r.dataset == "toy"}
    packed = [ex.meta for split in ("train", "val", "test") for ex in iter_examples(work / "shards", split, False)
              if ex.meta["dataset"] == "toy"]
    assert sorted(meta["id"] for meta in packed) == sorted(toy_splits)
    for meta in packed:  # the toy's own labels arrive unified
        expected = int(verdicts[meta["id"]] == "yes")
        assert meta["labels"]["abuse_hate"] == meta["labels"]["offensive"] == expected
        assert meta["split"] == result.splits[meta["id"]]
