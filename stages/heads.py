"""Multi-head experts: one shared backbone, one output head per requested label field.

The head layout is read from Step_3/label_taxonomy.json (stages/taxonomy.py validates it):
  binary      abuse_hate, offensive, binary aux labels (MAMI sub-types, motivational): 2 logits, softmax
  categorical target_type (its `values`), ordinal aux (`levels`: Memotion sentiment/humour/sarcasm/...),
              categorical aux with `values` (hatexplain_label): K logits, softmax
  multilabel  target_group over the taxonomy's vocabulary, or its `category` level: K logits, sigmoid

The model is the backbone's own sequence / image classifier with one output per logit of every
head (the heads are row blocks of the shared output layer, on the shared pooled representation),
so it saves and reloads as a plain AutoModelFor{Sequence,Image}Classification; config.json carries
the layout (`expert_heads`) and `load_expert(folder)` returns (model, layout).

Targets travel as one float vector per example: one slot per binary/categorical head (the class
index) and one slot per label of a multi-label head (0/1); MISSING (-100) in every slot of a head
whose field is null. The loss of a head is taken only over the rows where it is labeled.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.errors import InputError
from stages.taxonomy import Taxonomy

if TYPE_CHECKING:
    import torch

MISSING = -100.0
CONFIG_KEY = "expert_heads"            # config.json attribute holding the layout
TARGET_GROUP_LEVELS = ("name", "category")


class HeadLayoutError(InputError):
    """A requested field the taxonomy does not declare or that cannot be learned; a bad label value."""


@dataclass(frozen=True)
class Head:
    name: str
    kind: str                        # binary | categorical | multilabel
    classes: tuple[str, ...]         # output names, one per logit
    source: str = "labels"           # the shard json object holding the field: labels | aux
    level: str = "name"              # target_group only: name | category
    mapping: tuple[tuple[str, str], ...] = ()   # target_group at category level: vocabulary name -> category

    @property
    def width(self) -> int:
        return len(self.classes)

    @property
    def slots(self) -> int:
        return self.width if self.kind == "multilabel" else 1

    def encode(self, value: Any, where: str) -> list[float]:
        """The head's target slots for one raw value (None -> MISSING)."""
        if value is None:
            return [MISSING] * self.slots
        if self.kind == "multilabel":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise HeadLayoutError(f"{where}: {self.source}.{self.name} = {value!r:.80}, expected a list of names")
            names = dict(self.mapping)
            hot = [0.0] * self.width
            for item in value:
                item = names.get(item, item)
                if item not in self.classes:
                    raise HeadLayoutError(f"{where}: {self.source}.{self.name} has {item!r}, not in the taxonomy")
                hot[self.classes.index(item)] = 1.0
            return hot
        if isinstance(value, str) and value in self.classes:
            return [float(self.classes.index(value))]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.width:
            return [float(value)]
        raise HeadLayoutError(f"{where}: {self.source}.{self.name} = {value!r:.80}, expected one of "
                              f"{list(self.classes) if self.kind == 'categorical' else [0, 1]} or null")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "classes": list(self.classes), "source": self.source,
                "level": self.level, "mapping": dict(self.mapping)}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "Head":
        return cls(spec["name"], spec["kind"], tuple(spec["classes"]), spec["source"], spec["level"],
                   tuple(sorted(spec["mapping"].items())))


@dataclass(frozen=True)
class HeadLayout:
    heads: tuple[Head, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(head.name for head in self.heads)

    def head(self, name: str) -> Head:
        return self.heads[self.names.index(name)]

    def logit_slices(self) -> dict[str, slice]:
        return _slices(self.heads, "width")

    def slot_slices(self) -> dict[str, slice]:
        return _slices(self.heads, "slots")

    @property
    def width(self) -> int:
        return sum(head.width for head in self.heads)

    def id2label(self) -> dict[int, str]:
        """Readable names of the output units: `<field>=<class>` (one binary field: today's names)."""
        return dict(enumerate(f"{head.name}={name}" for head in self.heads for name in head.classes))

    def encode(self, meta: dict[str, Any], where: str) -> list[float] | None:
        """The target vector of one example, None when none of the requested fields is labeled."""
        target = []
        for head in self.heads:
            labels = meta.get(head.source) or {}
            if head.source == "labels" and head.name not in labels:
                raise HeadLayoutError(f"{where}: json has no 'labels.{head.name}'")
            target += head.encode(labels.get(head.name), where)
        return target if any(value != MISSING for value in target) else None

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Per head: softmax over its logits (binary, categorical) or sigmoid (multilabel)."""
        import torch

        parts = []
        for head, part in zip(self.heads, self.logit_slices().values()):
            block = logits[:, part].float()
            parts.append(torch.sigmoid(block) if head.kind == "multilabel" else torch.softmax(block, dim=-1))
        return torch.cat(parts, dim=-1)

    def decode_labels(self, target: np.ndarray) -> dict[str, Any]:
        """One example's target vector -> {field: class index | 0/1 list | None}."""
        out = {}
        for head, part in zip(self.heads, self.slot_slices().values()):
            values = target[part]
            out[head.name] = (None if values[0] == MISSING else [int(v) for v in values]
                              if head.kind == "multilabel" else int(values[0]))
        return out

    def to_config(self) -> list[dict[str, Any]]:
        return [head.to_dict() for head in self.heads]

    @classmethod
    def from_config(cls, specs: list[dict[str, Any]]) -> "HeadLayout":
        return cls(tuple(Head.from_dict(spec) for spec in specs))


def _slices(heads: tuple[Head, ...], attribute: str) -> dict[str, slice]:
    out, start = {}, 0
    for head in heads:
        size = getattr(head, attribute)
        out[head.name] = slice(start, start + size)
        start += size
    return out


def field_head(name: str, taxonomy: Taxonomy, target_group_level: str = "name") -> Head:
    """The head of one field, from its declaration in the taxonomy."""
    fields, aux = taxonomy.fields, taxonomy.spec.get("aux", {})
    if name in fields:
        spec, source = fields[name], "labels"
    elif name in aux:
        spec, source = aux[name], "aux"
    else:
        raise HeadLayoutError(f"train.tasks: {name!r} is neither a unified field ({', '.join(fields)}) nor an "
                              f"aux label of {taxonomy.source} ({', '.join(aux)})")
    kind = spec.get("type")
    if kind == "binary":
        return Head(name, "binary", (f"not_{name}", name), source)
    if kind == "ordinal":
        return Head(name, "categorical", tuple(spec["levels"]), source)
    if kind == "categorical" and spec.get("values"):
        return Head(name, "categorical", tuple(spec["values"]), source)
    if kind == "multilabel":
        vocabulary = spec["vocabulary"]
        if target_group_level == "category":
            categories = tuple(dict.fromkeys(entry["category"] for entry in vocabulary.values()))
            mapping = tuple(sorted((group, entry["category"]) for group, entry in vocabulary.items()))
            return Head(name, "multilabel", categories, source, "category", mapping)
        return Head(name, "multilabel", tuple(vocabulary), source)
    raise HeadLayoutError(f"train.tasks: {taxonomy.source} declares {name!r} as type {kind!r} without a fixed "
                          "set of values; it cannot be learned by a head")


@lru_cache(maxsize=8)
def head_layout(tasks: tuple[str, ...], taxonomy_path: str, target_group_level: str = "name") -> HeadLayout:
    taxonomy = Taxonomy.load(taxonomy_path)
    return HeadLayout(tuple(field_head(name, taxonomy, target_group_level) for name in tasks))


def load_expert(folder: str | Path):
    """(model, layout) of a saved expert; layout None for a single-task expert (plain 2-class model).
    Text experts load as AutoModelForSequenceClassification, vision experts as
    AutoModelForImageClassification; never trust_remote_code."""
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    auto = (AutoModelForSequenceClassification if type(config) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
            else AutoModelForImageClassification)
    model = auto.from_pretrained(folder, trust_remote_code=False)
    specs = getattr(config, CONFIG_KEY, None)
    return model, (HeadLayout.from_config(specs) if specs else None)


# ---------------------------------------------------------------- counts and loss

class HeadCounts:
    """Per dataset and head, the train counts: class counts (binary, categorical) or, for a
    multi-label head, [labeled examples, positives of label 1, ..., positives of label K]."""

    def __init__(self, layout: HeadLayout):
        self.layout = layout
        self.by_dataset: dict[str, dict[str, np.ndarray]] = {}

    def add(self, dataset: str, target: list[float]) -> None:
        counts = self.by_dataset.setdefault(dataset, {
            head.name: np.zeros(head.width + (head.kind == "multilabel"), dtype=np.int64)
            for head in self.layout.heads})
        for head, part in zip(self.layout.heads, self.layout.slot_slices().values()):
            values = target[part]
            if values[0] == MISSING:
                continue
            if head.kind == "multilabel":
                counts[head.name] += np.array([1] + [int(v) for v in values])
            else:
                counts[head.name][int(values[0])] += 1

    def total(self, name: str) -> np.ndarray:
        head = self.layout.head(name)
        return sum((c[name] for c in self.by_dataset.values()),
                   np.zeros(head.width + (head.kind == "multilabel"), dtype=np.int64))

    def labeled(self, name: str) -> int:
        counts = self.total(name)
        return int(counts[0] if self.layout.head(name).kind == "multilabel" else counts.sum())

    def of(self, dataset: str, name: str) -> np.ndarray:
        """A dataset's counts; the overall ones when it has no labeled train example of the field."""
        counts = self.by_dataset.get(dataset, {}).get(name)
        labeled = counts is not None and (counts[0] if self.layout.head(name).kind == "multilabel" else counts.sum())
        return counts if labeled else self.total(name)


def majority_target(head: Head, counts: np.ndarray) -> Any:
    """The train-majority prediction: a class index, or per label 1 when most labeled examples have it."""
    if head.kind == "multilabel":
        return (2 * counts[1:] > counts[0]).astype(int)
    return int(np.argmax(counts))   # ties: the lowest class (binary: class 0, as training.majority_class)


def head_class_weights(head: Head, counts: np.ndarray) -> list[float]:
    """Inverse class frequency N / (K n_c) (binary: training.class_weights); multi-label: the
    positive weight sqrt(negatives / positives) per label (the full ratio would make P = 0.5 the
    loss optimum of every rare group, i.e. predict it whenever in doubt). A class absent from train
    gets 1, and so does a label every labeled train example has (nothing to balance)."""
    if head.kind == "multilabel":
        labeled, positives = counts[0], counts[1:]
        return [round(float(np.sqrt((labeled - p) / p)), 6) if 0 < p < labeled else 1.0 for p in positives]
    total = counts.sum()
    return [round(float(total / (len(counts) * n)), 6) if n else 1.0 for n in counts]


def output_layer(model: torch.nn.Module, width: int) -> torch.nn.Linear:
    """The classifier's last linear layer (one output per logit of every head)."""
    import torch

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == width]
    if not layers or layers[-1].bias is None:
        raise HeadLayoutError(f"{type(model).__name__}: no linear output layer with {width} outputs and a bias")
    return layers[-1]


def init_label_priors(model: torch.nn.Module, layout: HeadLayout, counts: HeadCounts,
                      class_weights: dict[str, list[float]] | None) -> None:
    """Start each multi-label output at the optimum of its (weighted) loss for a constant prediction,
    logit = log(w p / (1 - p)) with p the train positive rate (clipped to [1e-3, 1 - 1e-3]): a
    fresh output at logit 0 says P = 0.5 for every group, which a few hundred steps at a fine-tuning
    learning rate do not undo, and the 0.5 threshold then predicts noise."""
    import torch

    bias = output_layer(model, layout.width).bias
    with torch.no_grad():
        for head, part in zip(layout.heads, layout.logit_slices().values()):
            if head.kind != "multilabel":
                continue
            total = counts.total(head.name)
            rate = np.clip(total[1:] / max(total[0], 1), 1e-3, 1 - 1e-3)
            weight = np.asarray((class_weights or {}).get(head.name, [1.0] * head.width))
            bias[part] = torch.tensor(np.log(weight * rate / (1 - rate)), dtype=bias.dtype)


class MultiHeadLoss:
    """Sum over heads of head_weight x the head's loss over the rows where its field is labeled
    (weighted cross-entropy; multi-label: BCE with per-label positive weights, summed over the labels,
    averaged over the rows). A head with no
    labeled row in the batch adds nothing, so its output rows get zero gradient."""

    def __init__(self, layout: HeadLayout, class_weights: dict[str, list[float]] | None,
                 head_weights: dict[str, float]):
        self.layout, self.class_weights, self.head_weights = layout, class_weights or {}, head_weights

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torch

        logits, labels = logits.float(), labels.float()
        total = logits.new_zeros(())
        for head, logit_part, slot_part in zip(self.layout.heads, self.layout.logit_slices().values(),
                                               self.layout.slot_slices().values()):
            target = labels[:, slot_part]
            rows = target[:, 0] != MISSING
            if not bool(rows.any()):
                continue
            weight = self.class_weights.get(head.name)
            weight = None if weight is None else torch.tensor(weight, device=logits.device)
            if head.kind == "multilabel":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(   # summed over labels:
                    logits[rows][:, logit_part], target[rows], pos_weight=weight,   # a mean would divide
                    reduction="none").sum(dim=1).mean()                             # each group's signal by K
            else:
                loss = torch.nn.functional.cross_entropy(logits[rows][:, logit_part], target[rows, 0].long(),
                                                         weight=weight)
            total = total + self.head_weights.get(head.name, 1.0) * loss
        return total
