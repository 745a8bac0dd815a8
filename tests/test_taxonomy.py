"""Unified label taxonomy: Step_3/label_taxonomy.json interpreted by stages.taxonomy."""
from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from stages.records import ManifestRecord
from stages.releases import DATASETS
from stages.taxonomy import LabelError, Taxonomy, TaxonomyError

TAXONOMY_PATH = "Step_3/label_taxonomy.json"


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    from stages.common import REPO_ROOT
    return Taxonomy.load(REPO_ROOT / TAXONOMY_PATH)


def rec(dataset: str, labels_raw, record_id: str = "x1", split: str | None = "train") -> ManifestRecord:
    return ManifestRecord(id=record_id, dataset=dataset, split=split, image_path=None, text_raw="t",
                          labels_raw=labels_raw)


def real_records(real_dataset, name: str) -> list[ManifestRecord]:
    from stages.releases import Example, read_release
    items = list(read_release(name, real_dataset(name)))
    return [item.manifest for item in items if isinstance(item, Example)]


def memotion1_raw(**over):
    raw = {"humour": "funny", "sarcasm": "general", "offensive": "slight", "motivational": "not_motivational",
           "overall_sentiment": "positive"}
    return {**raw, **over}


# ---------------------------------------------------------------- the file itself


def test_every_dataset_and_field_has_a_documented_rule(taxonomy):
    spec = taxonomy.spec
    assert set(taxonomy.datasets) == set(DATASETS)
    for dataset in DATASETS:
        for name in taxonomy.fields:
            rule = spec["datasets"][dataset]["labels"][name]
            assert isinstance(rule.get("notes"), str) and rule["notes"].strip(), f"{dataset}.{name} lacks notes"
    vocabulary = spec["fields"]["target_group"]["vocabulary"]
    for must in ("women", "black", "jewish", "muslim", "lgbtq"):
        assert must in vocabulary


def test_malformed_taxonomies_are_rejected_with_location(taxonomy):
    spec = copy.deepcopy(taxonomy.spec)
    del spec["datasets"]["olid"]["labels"]["abuse_hate"]
    with pytest.raises(TaxonomyError, match=r"datasets\.olid\.labels.*abuse_hate"):
        Taxonomy.from_dict(spec)
    spec = copy.deepcopy(taxonomy.spec)
    spec["datasets"]["hatexplain"]["target_vocab"]["African"] = "africans"
    with pytest.raises(TaxonomyError, match="africans"):
        Taxonomy.from_dict(spec)
    spec = copy.deepcopy(taxonomy.spec)  # a cond may only look at fields computed before it
    spec["datasets"]["hatexplain"]["labels"]["abuse_hate"] = spec["datasets"]["hatexplain"]["labels"]["target_type"]
    with pytest.raises(TaxonomyError, match="earlier unified fields"):
        Taxonomy.from_dict(spec)
    spec = copy.deepcopy(taxonomy.spec)
    spec["datasets"]["olid"]["labels"]["offensive"]["map"]["OFF"] = "yes"
    with pytest.raises(TaxonomyError, match="offensive values are 0, 1 or null"):
        Taxonomy.from_dict(spec)
    for chosen in (["target_group"], [], ["offensive", "offensive"], "abuse_hate"):   # binary fields only, distinct
        spec = copy.deepcopy(taxonomy.spec)
        spec["stratify_on"]["fields"] = chosen
        with pytest.raises(TaxonomyError, match=r"stratify_on.*binary unified fields \(abuse_hate, offensive"):
            Taxonomy.from_dict(spec)


def test_invalid_json_names_file_and_line(tmp_path):
    bad = tmp_path / "tax.json"
    bad.write_text('{"fields": {\n  oops}\n', encoding="utf-8")
    with pytest.raises(TaxonomyError, match=r"tax\.json: line 2"):
        Taxonomy.load(bad)


# ---------------------------------------------------------------- rules and errors


def test_unlabeled_record_maps_to_all_unknown(taxonomy):
    labels = taxonomy.map(rec("mami", None, split="test"))
    assert not labels.labeled
    assert (labels["abuse_hate"], labels["offensive"], labels["target_type"], labels["target_group"]) == (None,) * 4
    assert labels.to_json() == {
        "labels": {"abuse_hate": None, "offensive": None, "target_type": None, "target_group": None},
        "aux": {"objectification": None, "shaming": None, "stereotype": None, "violence": None}}


@pytest.mark.parametrize("dataset,raw,field,value", [
    ("memotion1", memotion1_raw(sarcasm="little_sarcastic"), "sarcasm", "little_sarcastic"),  # a Memotion 2 spelling
    ("olid", {"subtask_a": "off", "subtask_b": "NULL", "subtask_c": "NULL"}, "subtask_a", "off"),
    # even where a cond skips it
    ("olid", {"subtask_a": "NOT", "subtask_b": "NULL", "subtask_c": "XYZ"}, "subtask_c", "XYZ"),
    ("hateful_memes", {"label": 2}, "label", 2),
    ("mmhs150k", {"labels": [0, 7, 0], "labels_str": ["NotHate", "NotHate", "NotHate"]}, "labels[1]", 7),
    ("hatexplain", {"annotators": [{"label": "normal", "target": ["Martians"]}] * 2
                    + [{"label": "offensive", "target": ["None"]}]},
     "annotators[0].target", "Martians"),
    ("hatexplain", {"annotators": [{"label": "hateful", "target": ["None"]}]}, "annotators[0].label", "hateful"),
])
def test_unknown_raw_value_is_a_label_error(taxonomy, dataset, raw, field, value):
    with pytest.raises(LabelError) as err:
        taxonomy.map(rec(dataset, raw, record_id="rid-42"))
    assert (err.value.dataset, err.value.id, err.value.field, err.value.value) == (dataset, "rid-42", field, value)
    assert dataset in str(err.value) and "rid-42" in str(err.value) and repr(value) in str(err.value)


def test_missing_required_raw_field_and_unknown_dataset_are_label_errors(taxonomy):
    with pytest.raises(LabelError, match="subtask_a"):
        taxonomy.map(rec("olid", {"subtask_b": "NULL", "subtask_c": "NULL"}))
    with pytest.raises(LabelError, match="not in the taxonomy"):
        taxonomy.map(rec("hatemm", {"label": 1}))


def test_memotion_scales_and_both_sarcasm_spellings(taxonomy):
    m1 = taxonomy.map(rec("memotion1", memotion1_raw(sarcasm="twisted_meaning", offensive="hateful_offensive")))
    assert (m1["abuse_hate"], m1["offensive"], m1["target_group"]) == (1, 1, None)
    assert m1.aux == {"humour": 1, "sarcasm": 2, "motivational": 0, "sentiment": 3, "offensive_level": 3}
    raw2 = {"humour": "hilarious", "sarcastic": "very_sarcastic", "offensive": "not_offensive",
            "motivational": "motivational", "overall_sentiment": "very_negative"}
    m2 = taxonomy.map(rec("memotion2", raw2))
    assert (m2["abuse_hate"], m2["offensive"]) == (0, 0)
    assert m2.aux == {"humour": 3, "sarcasm": 2, "motivational": 1, "sentiment": 0, "offensive_level": 0}
    assert taxonomy.map(rec("memotion2", {**raw2, "offensive": "very_offensive"}))["abuse_hate"] == 0
    with pytest.raises(LabelError, match="sarcastic"):  # Memotion 2's field name, Memotion 1's value
        taxonomy.map(rec("memotion2", {**raw2, "sarcastic": "twisted_meaning"}))


def test_mmhs150k_majority_and_targets_kept_by_two_workers(taxonomy):
    def m(labels):
        names = ["NotHate", "Racist", "Sexist", "Homophobe", "Religion", "OtherHate"]
        return taxonomy.map(rec("mmhs150k", {"labels": labels, "labels_str": [names[x] for x in labels]}))
    mixed = m([1, 2, 0])  # two workers saw hate, of different kinds: hate, no agreed type
    assert (mixed["abuse_hate"], mixed["offensive"], mixed["target_group"], mixed["target_type"]) == (1, None, (), None)
    racist = m([1, 1, 0])
    assert (racist["abuse_hate"], racist["target_group"], racist["target_type"]) == (1, ("race_ethnicity",), "group")
    clean = m([0, 0, 3])
    assert (clean["abuse_hate"], clean["target_group"], clean["target_type"]) == (0, (), "none")


def test_hatexplain_no_majority_and_even_annotator_ties(taxonomy):
    def annotators(*labels):
        return {"annotators": [{"label": lab, "annotator_id": i, "target": ["Women"]} for i, lab in enumerate(labels)],
                "rationales": []}
    three_way = taxonomy.map(rec("hatexplain", annotators("hatespeech", "offensive", "normal"), split=None))
    assert (three_way["abuse_hate"], three_way["offensive"], three_way.aux["hatexplain_label"]) == (0, 1, None)
    assert three_way["target_group"] == ("women",) and three_way["target_type"] == "group"
    tie = taxonomy.map(rec("hatexplain", annotators("hatespeech", "offensive")))
    assert (tie["abuse_hate"], tie["offensive"]) == (None, 1)  # written tie rule: unknown


def test_mami_with_and_without_subtype_columns(taxonomy):
    full = taxonomy.map(rec("mami", {"misogynous": "1", "shaming": "0", "stereotype": "1", "objectification": "0",
                                     "violence": "0"}))
    assert full.fields == {"abuse_hate": 1, "offensive": None, "target_group": ("women",), "target_type": None}
    assert full.aux == {"shaming": 0, "stereotype": 1, "objectification": 0, "violence": 0}
    task_a_only = taxonomy.map(rec("mami", {"misogynous": "0"}))
    assert (task_a_only["abuse_hate"], task_a_only["target_group"]) == (0, None)
    assert task_a_only.aux == {"shaming": None, "stereotype": None, "objectification": None, "violence": None}


def test_to_json_shape_for_pack(taxonomy):
    out = taxonomy.map(rec("olid", {"subtask_a": "OFF", "subtask_b": "TIN", "subtask_c": "GRP"})).to_json()
    assert out == {"labels": {"abuse_hate": None, "offensive": 1, "target_type": "group", "target_group": None},
                   "aux": {}}
    json.dumps(out)


# ---------------------------------------------------------------- real samples


def test_real_olid_counts(taxonomy, real_dataset):
    records = real_records(real_dataset, "olid")
    train = [r for r in records if r.split == "train"]
    assert len(train) == 13240
    mapped = [(r, taxonomy.map(r)) for r in train]
    assert Counter(lab["offensive"] for _, lab in mapped) == {0: 8840, 1: 4400}
    assert {lab["abuse_hate"] for _, lab in mapped} == {None} and {lab["target_group"] for _, lab in mapped} == {None}
    offensive = [(r, lab) for r, lab in mapped if lab["offensive"] == 1]
    assert Counter(r.labels_raw["subtask_b"] for r, _ in offensive) == {"TIN": 3876, "UNT": 524}
    assert Counter(lab["target_type"] for _, lab in offensive) == {"none": 524, "individual": 2407, "group": 1074,
                                                                   "other": 395}
    assert Counter(lab["target_type"] for _, lab in mapped)["none"] == 8840 + 524
    test = [taxonomy.map(r) for r in records if r.split == "test"]
    assert len(test) == 860 and all(lab.labeled and lab["offensive"] in (0, 1) for lab in test)


def test_real_hatexplain_majority_computed_independently(taxonomy, real_dataset):
    records = real_records(real_dataset, "hatexplain")
    raw = json.loads((real_dataset("hatexplain") / "dataset.json").read_text(encoding="utf-8"))
    assert len(records) == len(raw) == 7
    names = {"African": "black", "Caucasian": "white", "Women": "women", "Asian": "asian", "Homosexual": "lgbtq",
             "Christian": "christian", "Minority": "minority"}
    for record in records:
        post = _post_of(raw, record)
        votes = Counter(a["label"] for a in post["annotators"])
        majority, count = votes.most_common(1)[0]
        majority = majority if count >= 2 else None
        named = Counter(t for a in post["annotators"] for t in set(a["target"]) if t != "None")
        expected_groups = tuple(sorted(names[t] for t, n in named.items() if n >= 2)) if majority != "normal" else ()
        labels = taxonomy.map(record)
        assert labels["abuse_hate"] == (majority == "hatespeech")
        assert labels["offensive"] == (majority in ("hatespeech", "offensive"))
        assert labels["target_group"] == expected_groups
        assert labels["target_type"] == ("group" if expected_groups else "none")
        assert labels.aux["hatexplain_label"] == majority
        assert labels.aux["rationales"] == post["rationales"]
    summary = Counter(taxonomy.map(r).aux["hatexplain_label"] for r in records)
    assert summary == {"hatespeech": 5, "offensive": 1, "normal": 1}


def _post_of(raw: dict, record: ManifestRecord) -> dict:
    matches = [post for post_id, post in raw.items() if record.id.endswith(post_id)]
    assert len(matches) == 1
    return matches[0]


def test_real_mami_rows_map_including_misogynous_without_subtype(taxonomy, real_dataset):
    records = real_records(real_dataset, "mami")
    assert len(records) == 300
    mapped = [(r, taxonomy.map(r)) for r in records]
    subtypes = ("shaming", "stereotype", "objectification", "violence")
    no_subtype = [lab for r, lab in mapped if lab["abuse_hate"] == 1 and not any(lab.aux[s] for s in subtypes)]
    assert no_subtype and all(lab["target_group"] == ("women",) for lab in no_subtype)
    for r, lab in mapped:
        assert lab["abuse_hate"] == int(r.labels_raw["misogynous"])
        assert lab.aux == {s: int(r.labels_raw[s]) for s in subtypes}
        assert lab["target_group"] == (("women",) if lab["abuse_hate"] else None)


def test_real_hateful_memes_rows_map(taxonomy, real_dataset):
    records = real_records(real_dataset, "hateful_memes")
    by_split = Counter()
    for r in records:
        lab = taxonomy.map(r)
        by_split[r.split, lab["abuse_hate"], lab.labeled] += 1
        assert (lab["offensive"], lab["target_type"], lab["target_group"]) == (None, None, None)
    assert by_split == {("train", 0, True): 5481, ("train", 1, True): 3019, ("dev_seen", 0, True): 253,
                        ("dev_seen", 1, True): 247, ("dev_unseen", 0, True): 340, ("dev_unseen", 1, True): 200,
                        ("test_unseen", None, False): 2000}


def test_real_memotion1_rows_map(taxonomy, real_dataset):
    records = real_records(real_dataset, "memotion1")
    assert len(records) == 300
    mapped = [taxonomy.map(r) for r in records]
    assert Counter(lab["offensive"] for lab in mapped) == {0: 134, 1: 166}
    assert Counter(lab["abuse_hate"] for lab in mapped) == {0: 297, 1: 3}
    assert Counter(lab.aux["sarcasm"] for lab in mapped) == {1: 146, 0: 81, 2: 60, 3: 13}
    assert Counter(lab.aux["sentiment"] for lab in mapped) == {3: 132, 2: 93, 4: 51, 1: 14, 0: 10}


def test_olid_release_with_only_level_a_test_labels_maps_cleanly(real_dataset, tmp_path):
    """A release may ship labels-levela.csv alone: subtask_b/c are then absent, target_type null."""
    import shutil

    from stages.releases import Example, read_release

    for name in ("testset-levela.tsv", "labels-levela.csv"):
        shutil.copy(real_dataset("olid") / name, tmp_path / name)
    taxonomy = Taxonomy.load(TAXONOMY_PATH)
    mapped = [taxonomy.map(item.manifest) for item in read_release("olid", tmp_path) if isinstance(item, Example)]
    counts = Counter((m["offensive"], m["target_type"]) for m in mapped)
    assert counts == {(0, "none"): 620, (1, None): 240}  # NOT has no target; OFF targets unknown


def test_real_hatecheck_suite_maps(taxonomy, real_dataset):
    """label_gold -> abuse_hate, target_ident -> the unified groups, direction -> target_type; offensive is
    not annotated; functionality, direction and case_templ are kept as aux labels."""
    records = real_records(real_dataset, "hatecheck")
    mapped = [(r, taxonomy.map(r)) for r in records]
    assert len(mapped) == 3728
    assert Counter(lab["abuse_hate"] for _, lab in mapped) == {1: 2563, 0: 1165}
    assert {lab["offensive"] for _, lab in mapped} == {None}
    # the file's groups: gay 551 + trans 463 people are lgbtq; the 292 untargeted cases have no group ([])
    assert Counter(lab["target_group"] for _, lab in mapped) == {
        ("lgbtq",): 1014, ("women",): 509, ("disabled",): 484, ("muslim",): 484, ("black",): 482,
        ("refugee_immigrant",): 463, (): 292}
    assert Counter(lab["target_type"] for _, lab in mapped) == {"group": 1618, "individual": 945, None: 1165}
    for record, lab in mapped:
        raw = record.labels_raw
        assert lab.aux["functionality"] == raw["functionality"] and lab.aux["case_templ"] == raw["case_templ"]
        assert lab.aux["direction"] == (None if raw["direction"] == "-" else raw["direction"])
    with pytest.raises(LabelError, match="functionality"):
        taxonomy.map(rec("hatecheck", {**records[0].labels_raw, "functionality": "new_test_h"}))
