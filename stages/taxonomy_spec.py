"""The shape of Step_3/label_taxonomy.json, checked when it loads (stages/taxonomy.py interprets it):
the unified fields, the rule language, and `validate_spec`, which names the file and the JSON
location of the first problem."""
from __future__ import annotations

from typing import Any

from stages.errors import InputError

# Evaluation order: a `cond` rule may test unified fields computed before it.
UNIFIED_FIELDS = ("abuse_hate", "offensive", "target_group", "target_type")
TARGET_TYPES = ("none", "individual", "group", "other")
RULES = ("const", "map", "vote", "targets", "copy", "cond")


class TaxonomyError(InputError):
    """The taxonomy file itself is malformed; names the file and the JSON location."""

    def __init__(self, source: str, where: str, problem: str):
        super().__init__(f"{source}: {where}: {problem}")


def validate_spec(spec: Any, source: str) -> None:
    def fail(where: str, problem: str):
        raise TaxonomyError(source, where, problem)

    if not isinstance(spec, dict):
        fail("<top>", "expected a JSON object")
    for key in ("fields", "datasets"):
        if not isinstance(spec.get(key), dict):
            fail(key, "missing or not an object")
    vocabulary = spec["fields"].get("target_group", {}).get("vocabulary")
    if not isinstance(vocabulary, dict) or not vocabulary:
        fail("fields.target_group.vocabulary", "missing or empty")
    aux_declared = spec.get("aux", {})
    for dataset, dspec in spec["datasets"].items():
        where = f"datasets.{dataset}"
        if not isinstance(dspec, dict) or not isinstance(dspec.get("raw_fields"), dict):
            fail(where, "needs a `raw_fields` object")
        if not isinstance(dspec.get("labels"), dict):
            fail(where, "needs a `labels` object")
        missing = [f for f in UNIFIED_FIELDS if f not in dspec["labels"]]
        if missing:
            fail(f"{where}.labels", f"every unified field needs a rule (null = not annotated); missing {missing}")
        unknown = sorted(set(dspec["labels"]) - set(UNIFIED_FIELDS))
        if unknown:
            fail(f"{where}.labels", f"unknown unified fields {unknown}")
        for name, decl in dspec["raw_fields"].items():
            items = decl.get("items", {}) if isinstance(decl, dict) else None
            if items is None:
                fail(f"{where}.raw_fields.{name}", "expected an object")
            for check in [items, *items.get("fields", {}).values()]:
                if "vocab" in check and not isinstance(dspec.get(check["vocab"]), dict):
                    fail(f"{where}.raw_fields.{name}", f"vocab {check['vocab']!r} is not a table of this dataset")
        for group in (dspec.get("target_vocab") or {}).values():
            if group is not None and group not in vocabulary:
                fail(f"{where}.target_vocab", f"{group!r} is not in fields.target_group.vocabulary")
        for name in dspec.get("aux", {}):
            if name not in aux_declared:
                fail(f"{where}.aux.{name}", "aux label not declared in the top-level `aux` section")
        for i, name in enumerate(UNIFIED_FIELDS):
            _validate_rule(dspec["labels"][name], f"{where}.labels.{name}", dspec, UNIFIED_FIELDS[:i],
                           name, vocabulary, fail)
        for name, rule in dspec.get("aux", {}).items():
            _validate_rule(rule, f"{where}.aux.{name}", dspec, UNIFIED_FIELDS, None, vocabulary, fail)


def _validate_rule(rule, where, dspec, earlier, target_field, vocabulary, fail) -> None:
    if not isinstance(rule, dict) or rule.get("rule") not in RULES:
        fail(where, f"expected an object with `rule` one of {RULES}")
    kind = rule["rule"]
    if kind == "cond":
        if not isinstance(rule.get("cases"), list) or "else" not in rule:
            fail(where, "cond needs `cases` (a list) and `else`")
        for i, case in enumerate(rule["cases"]):
            when = case.get("when") if isinstance(case, dict) else None
            if not isinstance(when, dict) or ("raw" in when) == ("field" in when):
                fail(f"{where}.cases[{i}]", "`when` needs exactly one of `raw` / `field`")
            if "field" in when and when["field"] not in earlier:
                fail(f"{where}.cases[{i}]", f"`field` may only test earlier unified fields {list(earlier)}")
            if "raw" in when and when["raw"] not in dspec["raw_fields"]:
                fail(f"{where}.cases[{i}]", f"raw field {when['raw']!r} not declared in raw_fields")
            if sum(k in when for k in ("is", "in", "nonempty")) != 1:
                fail(f"{where}.cases[{i}]", "`when` needs exactly one of `is` / `in` / `nonempty`")
            _validate_rule(case.get("then"), f"{where}.cases[{i}].then", dspec, earlier, target_field,
                           vocabulary, fail)
        _validate_rule(rule["else"], f"{where}.else", dspec, earlier, target_field, vocabulary, fail)
        return
    if kind == "const":
        if "value" not in rule:
            fail(where, "const needs `value`")
        _validate_value(rule["value"], where, target_field, vocabulary, fail)
        return
    if rule.get("from") not in dspec["raw_fields"]:
        fail(where, f"`from` {rule.get('from')!r} is not declared in raw_fields")
    if kind in ("map", "vote"):
        if not isinstance(rule.get("map"), dict) or not rule["map"]:
            fail(where, f"{kind} needs a non-empty `map`")
        for value in list(rule["map"].values()) + [rule.get("tie")]:
            _validate_value(value, where, target_field, vocabulary, fail)
    if kind == "targets":
        if target_field not in (None, "target_group"):
            fail(where, "a targets rule can only produce target_group")
        if not isinstance(rule.get("min_annotators"), int) or rule["min_annotators"] < 1:
            fail(where, "targets needs an integer `min_annotators` >= 1")
        if not isinstance(dspec.get("target_vocab"), dict):
            fail(where, "targets needs the dataset's `target_vocab`")


def _validate_value(value, where, target_field, vocabulary, fail) -> None:
    if value is None or target_field is None:
        return
    if target_field in ("abuse_hate", "offensive") and (value not in (0, 1) or isinstance(value, bool)):
        fail(where, f"{target_field} values are 0, 1 or null, got {value!r}")
    if target_field == "target_type" and value not in TARGET_TYPES:
        fail(where, f"target_type values are {TARGET_TYPES} or null, got {value!r}")
    if target_field == "target_group":
        if not isinstance(value, list) or any(g not in vocabulary for g in value):
            fail(where, f"target_group values are lists of vocabulary groups or null, got {value!r}")
