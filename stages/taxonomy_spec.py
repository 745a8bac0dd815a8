"""The shape of Step_3/label_taxonomy.json, checked when it loads (stages/taxonomy.py interprets it):
the unified fields (`unified_fields`: the one reader of their declarations, which every other
module asks), the fields splits are stratified on (`stratify_on`), the rule language, and
`validate_spec`, which names the file and the JSON location of the first problem."""
from __future__ import annotations

from typing import Any

from stages.errors import InputError

# A unified field's `type`: binary (values [0, 1]), categorical (its `values`), multilabel (a sorted
# list of names of its `vocabulary`).
FIELD_TYPES = ("binary", "categorical", "multilabel")
RULES = ("const", "map", "vote", "targets", "copy", "cond")


class TaxonomyError(InputError):
    """The taxonomy file itself is malformed; names the file and the JSON location."""

    def __init__(self, source: str, where: str, problem: str):
        super().__init__(f"{source}: {where}: {problem}")


def unified_fields(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The unified fields of a validated taxonomy, name -> declaration, in declaration order, which is
    the order they are computed in (a `cond` rule may test fields declared before its own)."""
    return dict(spec["fields"])


def fields_of_type(spec: dict[str, Any], kind: str) -> tuple[str, ...]:
    """The unified fields of one `type` (FIELD_TYPES), in declaration order."""
    return tuple(name for name, decl in unified_fields(spec).items() if decl["type"] == kind)


def _validate_field(name: str, decl: Any, fail) -> None:
    where = f"fields.{name}"
    if not isinstance(decl, dict) or decl.get("type") not in FIELD_TYPES:
        fail(where, f"expected an object with `type` one of {FIELD_TYPES}")
    values = decl.get("values")
    if decl["type"] == "binary" and values != [0, 1]:
        fail(f"{where}.values", f"a binary field's values are [0, 1], got {values!r}")
    if decl["type"] == "categorical" and (not isinstance(values, list) or not values
                                          or not all(isinstance(v, str) for v in values)):
        fail(f"{where}.values", f"a categorical field needs a non-empty list of string values, got {values!r}")
    if decl["type"] == "multilabel" and (not isinstance(decl.get("vocabulary"), dict) or not decl["vocabulary"]):
        fail(f"{where}.vocabulary", "missing or empty (a multilabel field's names)")


def _validate_stratify_on(decl: Any, binary: tuple[str, ...], fail) -> None:
    chosen = decl.get("fields") if isinstance(decl, dict) else None
    if (not isinstance(chosen, list) or not chosen or len(set(map(str, chosen))) != len(chosen)
            or any(name not in binary for name in chosen)):
        fail("stratify_on", f"needs `fields`: a list of distinct binary unified fields ({', '.join(binary)}), "
                            f"got {chosen!r}")


def validate_spec(spec: Any, source: str) -> None:
    def fail(where: str, problem: str):
        raise TaxonomyError(source, where, problem)

    if not isinstance(spec, dict):
        fail("<top>", "expected a JSON object")
    for key in ("fields", "datasets"):
        if not isinstance(spec.get(key), dict):
            fail(key, "missing or not an object")
    for name, decl in spec["fields"].items():
        _validate_field(name, decl, fail)
    fields = unified_fields(spec)
    names = tuple(fields)
    _validate_stratify_on(spec.get("stratify_on"), fields_of_type(spec, "binary"), fail)
    vocabularies = {name: decl["vocabulary"] for name, decl in fields.items() if decl["type"] == "multilabel"}
    aux_declared = spec.get("aux", {})
    for dataset, dspec in spec["datasets"].items():
        where = f"datasets.{dataset}"
        if not isinstance(dspec, dict) or not isinstance(dspec.get("raw_fields"), dict):
            fail(where, "needs a `raw_fields` object")
        if not isinstance(dspec.get("labels"), dict):
            fail(where, "needs a `labels` object")
        missing = [f for f in names if f not in dspec["labels"]]
        if missing:
            fail(f"{where}.labels", f"every unified field needs a rule (null = not annotated); missing {missing}")
        unknown = sorted(set(dspec["labels"]) - set(names))
        if unknown:
            fail(f"{where}.labels", f"unknown unified fields {unknown}")
        for name, decl in dspec["raw_fields"].items():
            items = decl.get("items", {}) if isinstance(decl, dict) else None
            if items is None:
                fail(f"{where}.raw_fields.{name}", "expected an object")
            for check in [items, *items.get("fields", {}).values()]:
                if "vocab" in check and not isinstance(dspec.get(check["vocab"]), dict):
                    fail(f"{where}.raw_fields.{name}", f"vocab {check['vocab']!r} is not a table of this dataset")
        known = {group for vocabulary in vocabularies.values() for group in vocabulary}
        for group in (dspec.get("target_vocab") or {}).values():
            if group is not None and group not in known:
                fail(f"{where}.target_vocab", f"{group!r} is in no multilabel field's vocabulary "
                                              f"({', '.join(f'fields.{f}.vocabulary' for f in vocabularies)})")
        for name in dspec.get("aux", {}):
            if name not in aux_declared:
                fail(f"{where}.aux.{name}", "aux label not declared in the top-level `aux` section")
        for i, name in enumerate(names):
            _validate_rule(dspec["labels"][name], f"{where}.labels.{name}", dspec, names[:i],
                           (name, fields[name]), fail)
        for name, rule in dspec.get("aux", {}).items():
            _validate_rule(rule, f"{where}.aux.{name}", dspec, names, None, fail)


def _validate_rule(rule, where, dspec, earlier, target, fail) -> None:
    """`target`: (name, declaration) of the unified field the rule computes; None for an aux label."""
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
            _validate_rule(case.get("then"), f"{where}.cases[{i}].then", dspec, earlier, target, fail)
        _validate_rule(rule["else"], f"{where}.else", dspec, earlier, target, fail)
        return
    if kind == "const":
        if "value" not in rule:
            fail(where, "const needs `value`")
        _validate_value(rule["value"], where, target, fail)
        return
    if rule.get("from") not in dspec["raw_fields"]:
        fail(where, f"`from` {rule.get('from')!r} is not declared in raw_fields")
    if kind in ("map", "vote"):
        if not isinstance(rule.get("map"), dict) or not rule["map"]:
            fail(where, f"{kind} needs a non-empty `map`")
        for value in list(rule["map"].values()) + [rule.get("tie")]:
            _validate_value(value, where, target, fail)
    if kind == "targets":
        if target is not None and target[1]["type"] != "multilabel":
            fail(where, "a targets rule can only produce a multilabel field")
        if not isinstance(rule.get("min_annotators"), int) or rule["min_annotators"] < 1:
            fail(where, "targets needs an integer `min_annotators` >= 1")
        if not isinstance(dspec.get("target_vocab"), dict):
            fail(where, "targets needs the dataset's `target_vocab`")


def _validate_value(value, where, target, fail) -> None:
    if value is None or target is None:
        return
    name, decl = target
    if decl["type"] == "multilabel":
        if not isinstance(value, list) or any(g not in decl["vocabulary"] for g in value):
            fail(where, f"{name} values are lists of fields.{name}.vocabulary names or null, got {value!r}")
    elif value not in decl["values"] or isinstance(value, bool):
        fail(where, f"{name} values are {', '.join(map(str, decl['values']))} or null, got {value!r}")
