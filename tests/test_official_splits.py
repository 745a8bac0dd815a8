"""Official evaluation splits stay whole: de-duplication never drops an example of a release's own
val/dev or test file (only a copy of another official file's example), and the split report and
stats.json say per dataset whether val/test are official and complete."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from stages.common import REPO_ROOT, load_params, project_path, write_json
from stages.images import ImageSpec
from stages.ingest import ingest
from stages.pack import PackConfig, pack
from stages.records import ManifestRecord, load_ocr_index, read_manifest
from stages.shards import iter_examples
from stages.split import SplitConfig, make_splits
from stages.taxonomy import Taxonomy
from stages.text import comparison_key
from tests.test_split import config, olid

TAXONOMY = project_path("split", "label_taxonomy")
OFFICIAL = load_params("releases", REPO_ROOT / "params.yaml")["official"]   # the documented defaults


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load(TAXONOMY)


def hatexplain(post_id: str, split: str | None, text: str, label: str = "normal") -> ManifestRecord:
    annotators = [{"label": label, "annotator_id": a, "target": ["None"]} for a in range(3)]
    return ManifestRecord(f"hatexplain_{split or 'all'}_{post_id}", "hatexplain", split, None, text,
                          {"annotators": annotators})


def memotion2(i: int, split: str, text: str) -> ManifestRecord:
    raw = {"humour": "funny", "sarcastic": "not_sarcastic", "offensive": "not_offensive",
           "motivational": "not_motivational", "overall_sentiment": "neutral"}
    return ManifestRecord(f"memotion2_{split}_{i}", "memotion2", split, None, text, raw)


def test_duplicates_inside_an_official_file_are_kept_and_reported(taxonomy):
    records = [olid(i, "train", i % 3 == 0) for i in range(60)]
    records += [olid(100 + i, "train", False, "@USER @USER") for i in range(3)]   # train copies: 2 dropped
    records += [olid(200 + i, "test", i % 2 == 0) for i in range(20)]
    records += [olid(300 + i, "test", False, "@USER @USER") for i in range(3)]   # official test copies: kept
    records += [hatexplain("created", None, "the very same post")]                # created, before its twin
    records += [hatexplain(f"t{i}", "train", f"train post {i}") for i in range(10)]
    records += [hatexplain("official", "test", "the very same post")]
    result = make_splits(records, {}, taxonomy, config(), image_root=Path("."))
    splits, report = result.splits, result.report

    assert all(r.id in splits for r in records if r.split == "test")
    assert sum(f"olid_train_{100 + i}" in splits for i in range(3)) == 1
    assert "hatexplain_all_created" not in splits                         # the official twin is kept instead
    exact = report["exact_duplicates"]
    assert exact["dropped"] == 3 and ["hatexplain_test_official", "hatexplain_all_created"] in exact["examples"]
    assert exact["kept_in_official_files"]["count"] == 2
    assert exact["kept_in_official_files"]["by_dataset_split"] == {"olid/test": 2}
    assert ["olid_test_300", "olid_test_301"] in exact["kept_in_official_files"]["examples"]
    olid_test = report["evaluation_splits"]["olid"]["test"]
    assert olid_test == {"official": True, "complete": True, "official_examples": 23, "kept": 23,
                         "dropped_as_copies": 0, "carved_or_created": 0,
                         "files": {"test": {"official_examples": 23, "kept": 23, "dropped_as_copies": 0}}}
    assert report["evaluation_splits"]["olid"]["val"]["official"] is False          # carved from train
    assert report["evaluation_splits"]["olid"]["val"]["carved_or_created"] == sum(v == "val" for k, v in splits.items()
                                                                                  if k.startswith("olid_"))
    assert report["evaluation_splits"]["hatexplain"]["test"]["complete"] is True
    kept_all = make_splits(records, {}, taxonomy, config(drop_exact_duplicates=False), image_root=Path("."))
    assert len(kept_all.splits) == len(records) and kept_all.report["exact_duplicates"]["dropped"] == 0


def test_copies_of_another_official_file_are_dropped(taxonomy):
    """Hateful Memes dev_unseen repeats dev_seen memes: both files go to val, the copies are dropped."""
    def meme(split: str, n: int, label: int, text: str) -> ManifestRecord:
        return ManifestRecord(f"hateful_memes_{split}_{n:05d}", "hateful_memes", split, f"img/{n:05d}.png",
                              text, {"label": label})
    records = [meme("dev_seen", n, n % 2, f"text {n}") for n in range(6)]
    records += [meme("dev_seen", 6, 1, "text 0")]                   # same text, other image: not a copy
    records += [meme("dev_unseen", n, n % 2, f"text {n}") for n in range(4)]
    records += [meme("dev_unseen", 50, 1, "own meme")]
    result = make_splits(records, {}, taxonomy, config(), image_root=Path("."))
    assert sorted(i for i in result.splits if "_dev_unseen_" in i) == ["hateful_memes_dev_unseen_00050"]
    assert all(r.id in result.splits for r in records if r.split == "dev_seen")
    val = result.report["evaluation_splits"]["hateful_memes"]["val"]
    assert val["files"] == {"dev_seen": {"official_examples": 7, "kept": 7, "dropped_as_copies": 0},
                            "dev_unseen": {"official_examples": 5, "kept": 1, "dropped_as_copies": 4}}
    assert (val["official"], val["complete"]) == (True, False)


def test_cross_split_dropping_spares_official_examples(taxonomy):
    # one content group: Memotion 2's official val, MAMI's official test and a carved Memotion 2
    # train meme (its pool has train + test; it joins the group's test member)
    records = [memotion2(1, "val", "shared words here"), memotion2(2, "train", "shared words here")]
    records += [memotion2(10 + i, "train", f"meme {i} words") for i in range(30)]
    records += [ManifestRecord("mami_test_1", "mami", "test", None, "shared words here",
                               {"misogynous": "0", "shaming": "0", "stereotype": "0", "objectification": "0",
                                "violence": "0"})]
    kept = make_splits(records, {}, taxonomy, config(), image_root=Path("."))
    assert (kept.splits["memotion2_train_2"], kept.splits["mami_test_1"]) == ("test", "test")
    result = make_splits(records, {}, taxonomy, config(drop_cross_split_duplicates=True), image_root=Path("."))
    assert "memotion2_train_2" not in result.splits                    # carved: dropped
    assert result.splits["mami_test_1"] == "test"                      # official test: kept, reported
    cross = result.report["cross_split_duplicates"]
    assert (cross["dropped_from_later_split"], cross["dropped_examples"]) == (1, ["memotion2_train_2"])
    assert cross["official_kept_in_later_split"] == {"count": 1, "by_dataset_split": {"mami/test": 1},
                                                     "examples": ["mami_test_1"]}


# ---------------------------------------------------------------- real releases, ingest -> split -> pack


def run_stages(name: str, release: Path, work: Path, taxonomy: Taxonomy) -> tuple[dict, dict, Path]:
    """(split report, pack stats, shard dir) for one real release, text-only, default split params."""
    manifest, ocr = work / "data_manifest.jsonl", work / "ocr.jsonl"
    ingest({name: release}, manifest, ocr, root=work)
    result = make_splits(list(read_manifest(manifest)), load_ocr_index(ocr), taxonomy,
                         SplitConfig(official=OFFICIAL, workers=1), image_root=work)
    write_json(work / "splits.json", result.splits)
    shards = work / "shards"
    stats = pack(PackConfig(manifest=manifest, ocr=ocr, output_dir=shards, stats=work / "stats.json",
                            label_taxonomy=TAXONOMY, splits=work / "splits.json", image=ImageSpec(image_size=32),
                            require_images=False, workers=1, image_root=work, image_dirs=(release,),
                            official=OFFICIAL))
    assert json.loads((work / "stats.json").read_text()) == stats
    return result.report, stats, shards


def test_real_olid_test_split_is_packed_whole_with_gold_labels(real_dataset, taxonomy, tmp_path):
    folder = real_dataset("olid")
    report, stats, shards = run_stages("olid", folder, tmp_path, taxonomy)

    def gold(level: str) -> dict[str, str]:
        rows = csv.DictReader(open(folder / f"labels-level{level}.csv", newline=""))
        return {row["id"]: row["label"] for row in rows}
    level_a, level_c = gold("a"), gold("c")
    packed = {ex.id: ex.meta for ex in iter_examples(shards, "test", with_images=False)}
    assert len(level_a) == 860 and set(packed) == {f"olid_test_{i}" for i in level_a}
    target = {"IND": "individual", "GRP": "group", "OTH": "other"}
    for tweet_id, label in level_a.items():
        labels = packed[f"olid_test_{tweet_id}"]["labels"]
        assert labels["offensive"] == {"OFF": 1, "NOT": 0}[label], tweet_id
        assert labels["target_type"] == (target[level_c[tweet_id]] if tweet_id in level_c else "none"), tweet_id
    assert stats["evaluation_splits"]["olid"]["test"] == {
        "official": True, "complete": True, "official_examples": 860, "packed": 860, "failed": 0, "excluded": 0,
        "packed_in_other_split": 0, "carved_or_created": 0,
        "files": {"test": {"official_examples": 860, "packed": 860, "failed": 0, "excluded": 0,
                           "packed_in_other_split": 0}}}
    assert report["evaluation_splits"]["olid"]["test"]["complete"] is True

    # copies (same normalised text and labels) inside each file: dropped from train, kept in test
    rows = list(read_manifest(tmp_path / "data_manifest.jsonl"))

    def copies(split: str) -> int:
        mine = [(comparison_key(r.text_raw, compatibility=True), tuple(r.labels_raw.values()))
                for r in rows if r.split == split]
        return len(mine) - len(set(mine))
    assert copies("train") > 0 and copies("test") > 0
    exact = report["exact_duplicates"]
    assert exact["dropped"] == copies("train") and set(exact["by_dataset_split"]) <= {"olid/train", "olid/val"}
    assert exact["kept_in_official_files"]["by_dataset_split"] == {"olid/test": copies("test")}
    assert stats["excluded_examples"] == copies("train")
    assert stats["splits"]["train"]["examples"] + stats["splits"]["val"]["examples"] == 13240 - copies("train")


def test_real_hateful_memes_dev_seen_keeps_all_500_memes(real_dataset, taxonomy, tmp_path):
    folder = real_dataset("hateful_memes")
    report, stats, shards = run_stages("hateful_memes", folder, tmp_path, taxonomy)
    dev_seen = {f"hateful_memes_dev_seen_{json.loads(line)['img'][4:9]}": json.loads(line)["label"]
                for line in (folder / "dev_seen.jsonl").read_text().splitlines()}
    val = {ex.id: ex.meta for ex in iter_examples(shards, "val", with_images=False)}
    assert len(dev_seen) == 500 and set(dev_seen) <= set(val)
    assert all(val[i]["labels"]["abuse_hate"] == label for i, label in dev_seen.items())
    file_counts = Counter("dev_unseen" if "_dev_unseen_" in i else "dev_seen" for i in val)
    assert file_counts == {"dev_seen": 500, "dev_unseen": 140}
    files = stats["evaluation_splits"]["hateful_memes"]["val"]["files"]
    assert files["dev_seen"] == {"official_examples": 500, "packed": 500, "failed": 0, "excluded": 0,
                                 "packed_in_other_split": 0}
    assert (files["dev_unseen"]["packed"], files["dev_unseen"]["excluded"]) == (140, 400)   # copies of dev_seen
    assert report["evaluation_splits"]["hateful_memes"]["val"]["files"]["dev_unseen"]["dropped_as_copies"] == 400
    assert report["exact_duplicates"]["by_dataset_split"] == {"hateful_memes/val": 400}
