"""Unified labels: interpret Step_3/label_taxonomy.json, a declarative mapping from each dataset's
`labels_raw` (Step 2 contract) to the unified fields its `fields` section declares (abuse_hate /
offensive / target_group / target_type today) plus dataset-specific auxiliary labels.

    taxonomy = Taxonomy.load("Step_3/label_taxonomy.json")
    labels = taxonomy.map(record)          # record: ManifestRecord -> UnifiedLabels
    labels["abuse_hate"]                   # a unified field's value (KeyError: not declared)
    labels.to_json()                       # {"labels": {...}, "aux": {...}}

Every mapping decision lives in the JSON; this module only knows the small rule language
(documented in the JSON's `rule_language` section):
  const   {"rule": "const", "value": V}
  map     {"rule": "map", "from": RAW_FIELD, "map": {RAW_VALUE: V}}
  vote    {"rule": "vote", "from": RAW_LIST, "key": ITEM_KEY?, "map": {RAW_VALUE: V}, "tie": V}
          each annotator's value is mapped first; the mapped value held by more than half of
          the annotators wins, otherwise the written `tie` value is used
  targets {"rule": "targets", "from": RAW_LIST, "key": ITEM_KEY?, "min_annotators": N}
          normalised groups (dataset `target_vocab`) named by at least N annotators, sorted
  copy    {"rule": "copy", "from": RAW_FIELD}            carried through verbatim
  cond    {"rule": "cond", "cases": [{"when": TEST, "then": RULE}, ...], "else": RULE}
          TEST = {"raw": RAW_FIELD | "field": EARLIER_UNIFIED_FIELD,
                  "is": V | "in": [V, ...] | "nonempty": true|false}
Raw values are compared by their text (JSON int 1 and CSV string "1" both match key "1").
A raw value the taxonomy does not list is a LabelError naming dataset, id, field and value.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.errors import InputError
from stages.records import ManifestRecord
from stages.taxonomy_spec import RULES, TaxonomyError, fields_of_type, unified_fields, validate_spec  # noqa: F401



class LabelError(InputError):
    """A record's raw labels do not fit the taxonomy; names dataset, id, field and value."""

    def __init__(self, dataset: str, record_id: str, field_name: str, value: Any, problem: str = "unknown value"):
        self.dataset, self.id, self.field, self.value = dataset, record_id, field_name, value
        super().__init__(f"{dataset} id {record_id!r}: labels_raw field '{field_name}': {problem} {value!r:.80}")


# A unified field's value: 0/1 (binary), a class name (categorical), a sorted tuple of names
# (multilabel); None = not annotated.
LabelValue = int | str | tuple[str, ...] | None


@dataclass(frozen=True)
class UnifiedLabels:
    """One example's labels. `fields` holds every unified field of the taxonomy, in its declaration
    order; `Taxonomy.map` builds it and checks each value against the field's declaration."""
    fields: dict[str, LabelValue]
    aux: dict[str, Any] = field(default_factory=dict)
    labeled: bool = False  # False only when labels_raw is None (unlabeled example)

    def __getitem__(self, name: str) -> LabelValue:
        return self.fields[name]

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": {name: list(value) if isinstance(value, tuple) else value for name, value in self.fields.items()},
            "aux": {name: self.aux[name] for name in sorted(self.aux)},
        }


def raw_key(value: Any) -> str:
    """The text a raw value is matched by: strings as they are, ints as digits, else JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------ evaluation


@dataclass
class _Context:
    dataset: str
    record_id: str
    raw: dict[str, Any]
    spec: dict[str, Any]              # the dataset's entry in `datasets`
    out: dict[str, Any]               # unified fields computed so far

    def error(self, field_name: str, value: Any, problem: str = "unknown value") -> LabelError:
        return LabelError(self.dataset, self.record_id, field_name, value, problem)


def _lookup(table: dict[str, Any], value: Any, ctx: _Context, where: str) -> Any:
    key = raw_key(value)
    if key not in table:
        raise ctx.error(where, value)
    return table[key]


def _annotator_values(rule: dict, ctx: _Context) -> list[tuple[str, Any]]:
    """(location, value) of each annotator's item: raw[from][i] or raw[from][i][key]."""
    name, key = rule["from"], rule.get("key")
    items = ctx.raw[name]
    if not isinstance(items, list) or not items:
        raise ctx.error(name, items, "expected a non-empty list of annotations, got")
    values = []
    for i, item in enumerate(items):
        if key is None:
            values.append((f"{name}[{i}]", item))
        elif isinstance(item, dict) and key in item:
            values.append((f"{name}[{i}].{key}", item[key]))
        else:
            raise ctx.error(f"{name}[{i}]", item, f"expected an object with '{key}', got")
    return values


def _vote(rule: dict, ctx: _Context) -> Any:
    votes = [_lookup(rule["map"], value, ctx, where) for where, value in _annotator_values(rule, ctx)]
    winner, count = Counter(raw_key(v) for v in votes).most_common(1)[0]
    if 2 * count > len(votes):
        return next(v for v in votes if raw_key(v) == winner)
    return rule.get("tie")


def _targets(rule: dict, ctx: _Context) -> tuple[str, ...]:
    vocab = ctx.spec["target_vocab"]
    annotators_naming: Counter = Counter()
    for where, value in _annotator_values(rule, ctx):
        named = value if isinstance(value, list) else [value]
        groups = {_lookup(vocab, name, ctx, where) for name in named}
        annotators_naming.update(g for g in groups if g is not None)  # one vote per annotator per group
    return tuple(sorted(g for g, n in annotators_naming.items() if n >= rule["min_annotators"]))


def _test(when: dict, ctx: _Context) -> bool:
    if "raw" in when:
        value = ctx.raw.get(when["raw"])
        key = None if value is None else raw_key(value)
        if "is" in when:
            return value is not None and key == raw_key(when["is"])
        if "in" in when:
            return value is not None and key in {raw_key(v) for v in when["in"]}
        return bool(value) == when["nonempty"]
    value = ctx.out[when["field"]]
    value = list(value) if isinstance(value, tuple) else value
    if "is" in when:
        return value == when["is"]
    if "in" in when:
        return value in when["in"]
    return (value is not None and len(value) > 0) == when["nonempty"]


def _evaluate(rule: dict, ctx: _Context) -> Any:
    kind = rule["rule"]
    if kind == "const":
        value = rule["value"]
        return tuple(value) if isinstance(value, list) else value
    if kind == "cond":
        for case in rule["cases"]:
            if _test(case["when"], ctx):
                return _evaluate(case["then"], ctx)
        return _evaluate(rule["else"], ctx)
    source = rule["from"]
    if source not in ctx.raw:  # only optional raw fields get here (required ones are checked first)
        return None
    if kind == "map":
        value = _lookup(rule["map"], ctx.raw[source], ctx, source)
        return tuple(value) if isinstance(value, list) else value  # a target_group list, as `const` gives
    if kind == "vote":
        return _vote(rule, ctx)
    if kind == "targets":
        return _targets(rule, ctx)
    return ctx.raw[source]  # copy


def _check_raw_fields(ctx: _Context) -> None:
    """Every declared raw field, annotator items included, before any rule runs: an unknown
    value is an error even where a `cond` would not read it."""
    for name, decl in ctx.spec["raw_fields"].items():
        if name not in ctx.raw:
            if not decl.get("optional", False):
                raise ctx.error(name, None, "missing field, got")
            continue
        value = ctx.raw[name]
        if decl.get("type") == "list":
            if not isinstance(value, list):
                raise ctx.error(name, value, "expected a list, got")
            for i, item in enumerate(value):
                _check_item(item, decl.get("items", {}), f"{name}[{i}]", ctx)
        else:
            _check_value(value, decl, name, ctx)


def _check_item(item: Any, decl: dict, where: str, ctx: _Context) -> None:
    if "fields" not in decl:
        _check_value(item, decl, where, ctx)
        return
    if not isinstance(item, dict):
        raise ctx.error(where, item, "expected an object, got")
    for key, key_decl in decl["fields"].items():
        if key not in item:
            raise ctx.error(f"{where}.{key}", None, "missing field, got")
        _check_value(item[key], key_decl, f"{where}.{key}", ctx)


def _check_value(value: Any, decl: dict, where: str, ctx: _Context) -> None:
    """`values`: the allowed values; `vocab`: the keys of a dataset table (e.g. target_vocab).
    A list value (an annotator's several targets) is checked element by element."""
    if "values" in decl:
        allowed = {raw_key(v) for v in decl["values"]}
    elif "vocab" in decl:
        allowed = set(ctx.spec[decl["vocab"]])
    else:
        return
    for element in value if isinstance(value, list) and "vocab" in decl else [value]:
        if raw_key(element) not in allowed:
            raise ctx.error(where, element)


def _check_output(name: str, decl: dict[str, Any], value: Any, ctx: _Context) -> None:
    """Guard against a taxonomy whose rules produce values outside the field's declaration."""
    if value is None:
        return
    if decl["type"] == "multilabel":
        ok = isinstance(value, tuple) and all(isinstance(g, str) for g in value)
    else:
        ok = value in decl["values"] and not isinstance(value, (bool, list, tuple))
    if not ok:
        raise ctx.error(name, value, "taxonomy rule produced an invalid unified value")


# ------------------------------------------------------------------ the taxonomy


@dataclass(frozen=True)
class Taxonomy:
    spec: dict[str, Any]
    source: str = "<taxonomy>"

    @classmethod
    def load(cls, path: str | Path) -> "Taxonomy":
        try:
            spec = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TaxonomyError(str(path), f"line {e.lineno}", f"invalid JSON: {e.msg}") from None
        return cls.from_dict(spec, str(path))

    @classmethod
    def from_dict(cls, spec: dict[str, Any], source: str = "<taxonomy>") -> "Taxonomy":
        validate_spec(spec, source)
        return cls(spec=spec, source=source)

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(sorted(self.spec["datasets"]))

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        """The unified fields, name -> declaration (`type`, `values` / `vocabulary`), in declaration order."""
        return unified_fields(self.spec)

    @property
    def stratify_on(self) -> tuple[str, ...]:
        """The binary fields an example's stratum comes from, first present wins (balance.stratum)."""
        return tuple(self.spec["stratify_on"]["fields"])

    def fields_of_type(self, kind: str) -> tuple[str, ...]:
        """The unified fields of one `type`: binary | categorical | multilabel."""
        return fields_of_type(self.spec, kind)

    def raw_values(self, dataset: str) -> dict[str, set[str]]:
        """The raw values `raw_fields` accepts, by field and text (`raw_key`): `f` a field, `f[]`
        each item of the list `f`, `f[].k` the key `k` of each item. Fields with neither `values`
        nor `vocab` are left out."""
        dspec = self.spec["datasets"][dataset]
        declared: dict[str, dict] = {}
        for name, decl in dspec["raw_fields"].items():
            items = decl.get("items", {})
            if decl.get("type") != "list":
                declared[name] = decl
            elif "fields" in items:
                declared.update({f"{name}[].{key}": d for key, d in items["fields"].items()})
            else:
                declared[f"{name}[]"] = items
        return {path: {raw_key(v) for v in decl["values"]} if "values" in decl else set(dspec[decl["vocab"]])
                for path, decl in declared.items() if "values" in decl or "vocab" in decl}

    def rule_values(self, dataset: str) -> list[tuple[str, str, set[str]]]:
        """(rule kind, raw field, values) per rule of the dataset that reads raw values: a `map` or
        `vote` table's keys, a `cond` test's values (field names as in `raw_values`)."""
        dspec = self.spec["datasets"][dataset]
        found: list[tuple[str, str, set[str]]] = []
        todo = [*dspec["labels"].values(), *dspec.get("aux", {}).values()]
        while todo:
            rule = todo.pop()
            if rule["rule"] == "cond":
                todo += [case["then"] for case in rule["cases"]] + [rule["else"]]
                tests = [case["when"] for case in rule["cases"]]
                found += [("cond", when["raw"], {raw_key(v) for v in when.get("in", [when.get("is")])})
                          for when in tests if "raw" in when and "nonempty" not in when]
            elif rule["rule"] == "map":
                found.append(("map", rule["from"], set(rule["map"])))
            elif rule["rule"] == "vote":
                key = rule.get("key")
                found.append(("vote", f"{rule['from']}[].{key}" if key else f"{rule['from']}[]", set(rule["map"])))
        return found

    def map(self, record: ManifestRecord) -> UnifiedLabels:
        spec = self.spec["datasets"].get(record.dataset)
        if spec is None:
            raise LabelError(record.dataset, record.id, "dataset", record.dataset, "dataset not in the taxonomy:")
        aux_rules = spec.get("aux", {})
        if record.labels_raw is None:
            return UnifiedLabels(dict.fromkeys(self.fields), aux=dict.fromkeys(aux_rules), labeled=False)
        if not isinstance(record.labels_raw, dict):
            raise LabelError(record.dataset, record.id, "<labels_raw>", record.labels_raw, "expected an object, got")
        ctx = _Context(record.dataset, record.id, record.labels_raw, spec, out={})
        _check_raw_fields(ctx)
        for name, decl in self.fields.items():   # declaration order: a cond may test earlier fields
            ctx.out[name] = _evaluate(spec["labels"][name], ctx)
            _check_output(name, decl, ctx.out[name], ctx)
        aux = {name: _evaluate(rule, ctx) for name, rule in aux_rules.items()}
        return UnifiedLabels(dict(ctx.out), aux=aux, labeled=True)
