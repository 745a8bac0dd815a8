"""Split stage: official splits, created/carved stratified splits, content groups, checks."""
from __future__ import annotations

import copy
import json
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.common import REPO_ROOT, project_path
from stages.dedupe import hash_image, near_phash_pairs
from stages.errors import InputError
from stages.records import ManifestRecord, OcrLine, OcrRecord
from stages.split import SplitConfig, main, make_splits
from stages.taxonomy import Taxonomy
from stages.text import comparison_key
from tests.test_records import write_jsonl

OFFICIAL = {"hateful_memes": {"train": "train", "dev_seen": "val", "dev_unseen": "val", "test_seen": "test",
                              "test_unseen": "test"},
            "olid": {"train": "carve", "test": "test"},
            "memotion2": {"train": "carve", "val": "val"},
            "mami": {"training": "carve", "test": "test"},
            "hatexplain": {"train": "train", "val": "val", "test": "test"}}


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load(project_path("split", "label_taxonomy"))


def config(**over) -> SplitConfig:
    return SplitConfig(official=OFFICIAL, **{"workers": 1, **over})


def smooth_image(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture: distinct per seed, and its phash survives resizing/re-encoding."""
    cells = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((size, size), Image.BICUBIC)


def olid(i: int, split: str, offensive: bool, text: str | None = None) -> ManifestRecord:
    raw = {"subtask_a": "OFF", "subtask_b": "UNT", "subtask_c": "NULL"} if offensive else \
        {"subtask_a": "NOT", "subtask_b": "NULL", "subtask_c": "NULL"}
    return ManifestRecord(f"olid_{split}_{i}", "olid", split, None,
                          text or f"tweet number {i} about topic {i * 7}", raw)


def mami(i: int, split: str, misogynous: bool, image_path: str, text: str) -> tuple[ManifestRecord, OcrRecord]:
    raw = {"misogynous": str(int(misogynous)), "shaming": "0", "stereotype": "0", "objectification": "0",
           "violence": "0"}
    record = ManifestRecord(f"mami_{split}_{i}", "mami", split, image_path, None, raw)
    return record, OcrRecord(record.id, "mami", split, image_path, (OcrLine(text),), "dataset_transcription")


def planted(tmp_path: Path):
    """MAMI training (carved) with planted duplicates, MAMI test, OLID train/test, HateXplain with no split."""
    img = tmp_path / "img"
    img.mkdir()
    rng = random.Random(3)
    records, ocr = [], {}
    for i in range(90):
        path = img / f"{i}.png"
        smooth_image(i).save(path)
        record, line = mami(i, "training" if i < 75 else "test", rng.random() < 0.5, f"img/{i}.png",
                            f"meme caption {i} z{i * 13}")
        records.append(record)
        ocr[record.id] = line
    (img / "copy_of_3.png").write_bytes((img / "3.png").read_bytes())            # same bytes, other id
    smooth_image(5).resize((64, 64)).convert("RGB").save(img / "small_5.jpg", quality=70)  # re-encoded resized copy
    for i, (path, text) in enumerate([("img/copy_of_3.png", "another caption"), ("img/small_5.jpg", "yet another")]):
        record, line = mami(100 + i, "training", True, path, text)
        records.append(record)
        ocr[record.id] = line
    records += ([olid(i, "train", i % 3 == 0) for i in range(120)]
                + [olid(200 + i, "test", i % 2 == 0) for i in range(20)])
    records += [olid(300, "train", True, "The SAME tweet, here!"), olid(301, "train", False, "the same   tweet here")]
    records += [ManifestRecord(f"hatexplain_all_{i}", "hatexplain", None, None, f"post {i} w{i * 3}",
                               {"annotators": [{"label": "normal" if i % 4 else "hatespeech", "annotator_id": a,
                                                "target": ["None"]} for a in range(3)]}) for i in range(40)]
    return records, ocr


def run(records, ocr, taxonomy, root, **over):
    return make_splits(records, ocr, taxonomy, config(**over), image_root=root)


def test_planted_duplicates_never_straddle_and_runs_are_identical(tmp_path, taxonomy):
    records, ocr = planted(tmp_path)
    result = run(records, ocr, taxonomy, tmp_path)
    splits = result.splits
    assert splits["mami_training_3"] == splits["mami_training_100"]      # same bytes
    assert splits["mami_training_5"] == splits["mami_training_101"]      # phash of a resized JPEG copy
    assert splits["olid_train_300"] == splits["olid_train_301"]          # same normalised text
    links = result.report["groups"]["links"]
    assert ["mami_training_3", "mami_training_100"] in links["sha256"]["examples"]
    assert ["mami_training_5", "mami_training_101"] in links["phash"]["examples"]
    assert ["olid_train_300", "olid_train_301"] in links["text"]["examples"]
    assert result.report["groups"]["multi_member"] == 3
    assert result.report["checks"]["groups_within_one_created_split"] == {"ok": True, "violations": 0}
    assert result.report["checks"]["ids_unique"]["ok"]
    # official splits respected; carved pools use only train + the split the dataset lacks
    assert {splits[r.id] for r in records if r.split == "test"} == {"test"}
    assert {splits[r.id] for r in records if r.split in ("train", "training")} == {"train", "val"}
    assert {splits[r.id] for r in records if r.split is None} == {"train", "val", "test"}
    again = run(list(records), dict(ocr), taxonomy, tmp_path, workers=2)  # a process pool: ordered, same result
    assert json.dumps(again.splits) == json.dumps(result.splits)
    assert json.dumps(again.report, sort_keys=True) == json.dumps(result.report, sort_keys=True)
    reseeded = run(records, ocr, taxonomy, tmp_path, seed=1)
    assert reseeded.splits != result.splits and reseeded.splits["olid_train_300"] == reseeded.splits["olid_train_301"]


def test_carved_and_created_splits_are_stratified(tmp_path, taxonomy):
    records, ocr = planted(tmp_path)
    splits = run(records, ocr, taxonomy, tmp_path).splits
    olid_train = [r for r in records if r.dataset == "olid" and r.split == "train"]
    for cls in ("OFF", "NOT"):  # each class gets its carve share of val, up to rounding
        members = [r for r in olid_train if r.labels_raw["subtask_a"] == cls]
        in_val = sum(splits[r.id] == "val" for r in members)
        assert int(0.1 * len(members)) <= in_val <= int(0.1 * len(members)) + 1, (cls, in_val, len(members))
    val = [r for r in olid_train if splits[r.id] == "val"]
    share = lambda rs: sum(r.labels_raw["subtask_a"] == "OFF" for r in rs) / len(rs)  # noqa: E731
    assert abs(share(val) - share(olid_train)) <= 0.05
    created = Counter(splits[r.id] for r in records if r.dataset == "hatexplain")
    assert created == {"train": 32, "val": 4, "test": 4}


def test_the_taxonomy_names_the_fields_splits_are_stratified_on(tmp_path, taxonomy):
    records, ocr = planted(tmp_path)
    default = run(records, ocr, taxonomy, tmp_path).report
    spec = copy.deepcopy(taxonomy.spec)
    spec["stratify_on"]["fields"] = ["offensive"]
    offensive_only = run(records, ocr, Taxonomy.from_dict(spec), tmp_path).report

    def strata(report, dataset):
        return {stratum for per_split in report["counts"][dataset].values() for stratum in per_split}
    assert default["stratify_on"] == ["abuse_hate", "offensive"] and offensive_only["stratify_on"] == ["offensive"]
    assert strata(default, "mami") == {"abuse_hate=0", "abuse_hate=1"}          # MAMI: abuse_hate (misogyny)
    assert strata(default, "olid") == {"offensive=0", "offensive=1"}            # OLID: offensive only
    assert strata(offensive_only, "mami") == {"no_binary_label"}    # MAMI annotates misogyny (abuse_hate) only
    assert strata(offensive_only, "olid") == strata(default, "olid")


def test_hateful_memes_unseen_copies_dropped_and_unlabeled_kept(tmp_path, taxonomy):
    img = tmp_path / "img"
    img.mkdir()
    records, ocr = [], {}

    def meme(split, n, label, text):
        path = img / f"{n:05d}.png"
        if not path.exists():
            smooth_image(n).save(path)
        record = ManifestRecord(f"hateful_memes_{split}_{n:05d}", "hateful_memes", split, f"img/{n:05d}.png", None,
                                None if label is None else {"label": label})
        records.append(record)
        ocr[record.id] = OcrRecord(record.id, record.dataset, split, record.image_path, (OcrLine(text),),
                                   "dataset_transcription")

    for n in range(10):
        meme("dev_seen", n, n % 2, f"text {n}")
    for n in range(6):                      # 6 copies of dev_seen memes + 2 own ones
        meme("dev_unseen", n, n % 2, f"text {n}")
    meme("dev_unseen", 50, 1, "own meme")
    meme("dev_unseen", 51, 0, "own meme two")
    for n in range(60, 64):
        meme("test_unseen", n, None, f"unseen {n}")
    meme("train", 70, 1, "train meme")
    meme("test_seen", 71, 1, "train meme")  # same text, other image: a cross-split group, kept
    result = run(records, ocr, taxonomy, tmp_path)
    assert "hateful_memes_dev_unseen_00003" not in result.splits
    assert result.splits["hateful_memes_dev_seen_00003"] == "val"
    assert result.splits["hateful_memes_dev_unseen_00050"] == "val"
    report = result.report
    assert report["exact_duplicates"]["dropped"] == 6
    assert ["hateful_memes_dev_seen_00000", "hateful_memes_dev_unseen_00000"] in report["exact_duplicates"]["examples"]
    assert report["unlabeled"] == {"hateful_memes": {"test": 4}}
    assert report["counts"]["hateful_memes"]["test"] == {"abuse_hate=1": 1, "unlabeled": 4}
    assert report["cross_split_duplicates"]["by_splits"] == {"train|test": 1}
    assert report["checks"]["balance"]["pools"] == {}  # nothing created: no balance to judge
    crossed = run(records, ocr, taxonomy, tmp_path, drop_cross_split_duplicates=True)  # official test: kept, reported
    assert crossed.splits["hateful_memes_test_seen_00071"] == "test"
    assert crossed.splits["hateful_memes_train_00070"] == "train"
    kept_in_later = crossed.report["cross_split_duplicates"]["official_kept_in_later_split"]
    assert kept_in_later["examples"] == ["hateful_memes_test_seen_00071"]
    kept_copies = run(records, ocr, taxonomy, tmp_path, drop_exact_duplicates=False)
    assert kept_copies.splits["hateful_memes_dev_unseen_00003"] == "val"


def test_unbalanceable_input_warns_instead_of_failing(taxonomy, caplog):
    # every offensive tweet is the same text: one content group, which cannot be spread over splits
    records = [olid(i, "train", True, "you are all the same") for i in range(40)]
    records += [olid(100 + i, "train", False) for i in range(260)]
    with caplog.at_level(logging.WARNING):  # (kept as copies: exact-duplicate dropping would merge them)
        result = make_splits(records, {}, taxonomy, config(drop_exact_duplicates=False), image_root=Path("."))
    balance = result.report["checks"]["balance"]
    assert not balance["ok"] and not balance["pools"]["olid/carve"]["ok"]
    assert any("balance olid/carve" in w and "offensive=" in w for w in result.report["warnings"])
    assert "balance olid/carve" in caplog.text
    assert len({result.splits[r.id] for r in records[:40]}) == 1  # the group still stays together


def test_label_errors_missing_images_and_unknown_splits(tmp_path, taxonomy):
    img = tmp_path / "img"
    img.mkdir()
    (img / "broken.png").write_bytes(b"not a png at all")
    records = [olid(i, "train", i % 2 == 0) for i in range(30)]
    records.append(ManifestRecord("olid_train_bad", "olid", "train", None, "weird",
                                  {"subtask_a": "MAYBE", "subtask_b": "NULL", "subtask_c": "NULL"}))
    records += [mami(1, "training", True, "img/broken.png", "a")[0], mami(2, "training", False, "img/gone.png", "b")[0]]
    result = run(records, {}, taxonomy, tmp_path)
    assert "olid_train_bad" in result.splits  # kept: pack counts it as a failure
    assert result.report["label_errors"]["count"] == 1 and "MAYBE" in result.report["label_errors"]["examples"][0]
    assert (result.report["images"]["undecodable"], result.report["images"]["missing"]) == (1, 1)
    assert hash_image(img / "broken.png").status == "undecodable" and hash_image(img / "gone.png").status == "missing"
    unknown = records + [olid(9, "dev", True)]
    with pytest.raises(ValueError, match="olid/dev"):
        run(unknown, {}, taxonomy, tmp_path)


def test_near_phash_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 400, dtype=np.uint64)
    flips = [base[i] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, k, replace=False)))
             for i, k in zip(range(0, 400, 4), [1, 3, 4, 5, 6] * 20)]
    hashes = np.unique(np.concatenate([base, np.array(flips, dtype=np.uint64)]))
    for threshold in (0, 4, 6):
        brute = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                 if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= threshold}
        assert set(near_phash_pairs(hashes, threshold)) == brute
    assert len(set(near_phash_pairs(hashes, 4))) >= 60
    # skewed hashes (only the low 22 bits vary): big buckets are split again on the remaining bits
    skewed = np.unique(rng.integers(0, 2**22, 2000, dtype=np.uint64))
    brute = {(i, j) for i, j in zip(*np.nonzero(np.bitwise_count(skewed[:, None] ^ skewed[None, :]) <= 3)) if i < j}
    assert set(near_phash_pairs(skewed, 3, brute_force_below=64)) == brute and len(brute) > 500


def test_text_normalisation():
    def key(text: str) -> str:
        return comparison_key(text, compatibility=True)
    assert key("  Hello,   WORLD!! ") == key("hello world") == "hello world"
    assert key("🙂 ... !!") == ""


def test_main_writes_sorted_outputs_and_fails_cleanly(tmp_path, taxonomy):
    records, ocr = planted(tmp_path)
    write_jsonl(tmp_path / "m.jsonl", records)
    write_jsonl(tmp_path / "o.jsonl", ocr.values())
    params = tmp_path / "params.yaml"
    params.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    args = ["--manifest", str(tmp_path / "m.jsonl"), "--ocr", str(tmp_path / "o.jsonl"),
            "--label-taxonomy", str(project_path("split", "label_taxonomy")), "--params", str(params),
            "--image-root", str(tmp_path), "--workers", "1"]
    main(args + ["--splits", str(tmp_path / "s.json"), "--report", str(tmp_path / "r.json")])
    splits = json.loads((tmp_path / "s.json").read_text())
    assert list(splits) == sorted(splits) and len(splits) == len(records)
    first = (tmp_path / "s.json").read_bytes(), (tmp_path / "r.json").read_bytes()
    main(args + ["--splits", str(tmp_path / "s.json"), "--report", str(tmp_path / "r.json")])
    assert first == ((tmp_path / "s.json").read_bytes(), (tmp_path / "r.json").read_bytes())
    assert str(tmp_path) not in first[1].decode()  # no absolute paths in the report
    with pytest.raises(InputError, match="^manifest file not found"):
        main(args[:1] + [str(tmp_path / "nope.jsonl")] + args[2:])
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:1"):
        main(["--manifest", str(tmp_path / "bad.jsonl")] + args[2:])
    assert not (tmp_path / "Step_3").exists()


def test_real_hateful_memes_unseen_overlap(real_dataset, taxonomy, tmp_path):
    """Real rows without images: the 400 dev_unseen copies of dev_seen are the same file, text and label."""
    from stages.releases import Example, read_release
    records = [item.manifest for item in read_release("hateful_memes", real_dataset("hateful_memes"))
               if isinstance(item, Example)]
    result = make_splits(records, {}, taxonomy, config(), image_root=tmp_path)
    report = result.report
    assert report["exact_duplicates"]["by_dataset_split"].get("hateful_memes/val") == 400
    assert sum(1 for i in result.splits if "_dev_unseen_" in i) == 140
    assert report["unlabeled"]["hateful_memes"] == {"test": 2000}
    assert report["images"]["missing"] == report["images"]["unique_images"]


def test_pilot_split_meets_balance_tolerance(tmp_path, taxonomy):
    from stages.ingest import ingest
    from stages.pilot import PilotConfig, write_pilot
    from stages.records import load_ocr_index, read_manifest
    pilot = write_pilot(PilotConfig(out=tmp_path / "pilot", examples_per_dataset=240))
    datasets = {name: pilot.out / name for name in pilot.counts}
    ingest(datasets, tmp_path / "m.jsonl", tmp_path / "o.jsonl", root=tmp_path)
    from stages.common import load_params
    params = load_params("releases", REPO_ROOT / "params.yaml")
    cfg = SplitConfig(official=params["official"], workers=2)
    result = make_splits(list(read_manifest(tmp_path / "m.jsonl")), load_ocr_index(tmp_path / "o.jsonl"),
                         taxonomy, cfg, image_root=tmp_path)
    report = result.report
    assert report["checks"]["groups_within_one_created_split"]["ok"] and report["checks"]["ids_unique"]["ok"]
    judged = {pool: e for pool, e in report["checks"]["balance"]["pools"].items()
              if any(s["judged"] for s in e["splits"].values())}
    assert {"mami/carve", "memotion1/carve", "memotion2/carve", "olid/carve"} <= set(judged)
    for pool, entry in judged.items():
        for split, s in entry["splits"].items():
            if s["judged"]:
                assert s["max_deviation"] <= 0.05, (pool, split, s)
    assert report["checks"]["balance"]["ok"]
    assert report["images"]["hashed"] > 0 and report["groups"]["links"]["phash"]["merges"] > 0
