"""HateCheck (Röttger et al., ACL 2021): test_suite_cases.csv, 3,728 functional test cases in 29
functionalities; a diagnostic suite, every case in the original split "test".

The adapter is stages/releases/hatecheck.py; its docstring is the spec these tests check."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stages.releases import ReleaseError, read_release
from tests.releases import examples, split_items, write

HATECHECK_HEADER = (",functionality,case_id,test_case,label_gold,target_ident,direction,focus_words,focus_lemma,"
                    "ref_case_id,ref_templ_id,templ_id,case_templ")


def test_hatecheck_real(real_dataset):
    """The whole suite as SOURCES.md counts it: 3,728 cases, 29 functionalities, labels and targets."""
    items = examples("hatecheck", real_dataset("hatecheck"))
    records = [item.manifest for item in items]
    assert len(records) == 3728 and len({r.id for r in records}) == 3728
    assert {r.split for r in records} == {"test"} and all(r.image_path is None for r in records)
    raw = [r.labels_raw for r in records]
    assert Counter(x["label_gold"] for x in raw) == {"hateful": 2563, "non-hateful": 1165}
    functionalities = Counter(x["functionality"] for x in raw)
    assert len(functionalities) == 29 and functionalities["counter_quote_nh"] == 173
    assert functionalities["slur_homonym_nh"] == 30 and functionalities["ident_pos_nh"] == 189
    # one gold label per functionality, named by its suffix
    assert all((x["label_gold"] == "hateful") == x["functionality"].endswith("_h") for x in raw)
    assert Counter(x["target_ident"] for x in raw) == {
        "gay people": 551, "women": 509, "disabled people": 484, "Muslims": 484, "black people": 482,
        "trans people": 463, "immigrants": 463, "": 292}
    assert Counter(x["direction"] for x in raw) == {"general": 1618, "directed": 945, "-": 1165}
    first = records[0]
    assert (first.id, first.text_raw) == ("hatecheck_test_1", "I hate women. ")  # the trailing space is the file's
    assert first.labels_raw == {"label_gold": "hateful", "target_ident": "women", "direction": "general",
                                "functionality": "derog_neg_emote_h", "case_templ": "I hate [IDENTITY_P]."}


def test_hatecheck_malformed_rows(tmp_path):
    write(tmp_path / "hc" / "test_suite_cases.csv", HATECHECK_HEADER + "\n"
          '0,slur_h,1,"You are just a x, to me. ",hateful,women,directed,x,x,,,1,You are just a [SLUR_S] to me.\n'
          "1,slur_h,2,short row,hateful\n"
          "2,slur_h,3,Unknown label. ,maybe,women,general,,,,,2,t\n"
          "\n"
          "4,slur_h, ,Empty id. ,hateful,women,general,,,,,3,t\n"
          "5,profanity_nh,6,Fucking hell. ,non-hateful,,-,,,,,4,Fucking hell.\n"
          "6,slur_h,7,Unknown group. ,hateful,martians,general,,,,,5,t\n")
    items, skips = split_items("hatecheck", tmp_path / "hc")
    assert [(e.manifest.id, e.manifest.text_raw) for e in items] == [
        ("hatecheck_test_1", "You are just a x, to me. "), ("hatecheck_test_6", "Fucking hell. ")]
    assert items[1].manifest.labels_raw["target_ident"] == "" and items[1].where.endswith("test_suite_cases.csv:7")
    assert [(Path(s.file).name, s.line, s.reason) for s in skips] == [
        ("test_suite_cases.csv", 3, "row with missing columns"),
        ("test_suite_cases.csv", 4, "label value outside the documented set"),
        ("test_suite_cases.csv", 6, "empty id"),
        ("test_suite_cases.csv", 8, "label value outside the documented set")]
    assert "label_gold='maybe'" in skips[1].detail and "target_ident='martians'" in skips[3].detail
    write(tmp_path / "bad" / "test_suite_cases.csv", "case_id,test_case,label_gold\n1,x,hateful\n")
    with pytest.raises(ReleaseError, match=r"test_suite_cases\.csv:1: header lacks column\(s\) \['target_ident'"):
        list(read_release("hatecheck", tmp_path / "bad"))

