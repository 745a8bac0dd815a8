"""Which vision recipe learns on real memes? Compared on VAL only (a script, not a test).

Reads packed shards (e.g. a real_data run's <work>/Step_3/shards with Memotion 1's images) and
compares, per binary field, the image expert's recipes on the val split:
  probe      linear probe: frozen ImageNet backbone, a linear head on its pooled features
  partial    partial unfreezing: the last `--unfrozen-blocks` block stages + conv head + head train
  full       full fine-tuning (expensive: `--full-examples` train images, one epoch; beside a probe
             trained on the same images for the same epoch, so the two compare on equal data)
over input resolution, augmentation (horizontal flip), class weighting, epochs and learning rate.
The frozen part runs once per resolution (and once more for the flipped views): its pooled
features and the activations before the unfrozen blocks are cached and reused by every epoch,
learning rate and seed. Transforms are timm's (`resolve_data_config` + `create_transform`, squash,
no centre crop: meme text runs to the edges). Writes every val score to --out (JSON) and prints
the best recipes per field.

    python benchmarks/vision_recipes.py --shards <work>/Step_3/shards --out /tmp/recipes.json
        [--resolutions 128 224] [--seeds 0 1] [--full-examples 600]
"""
from __future__ import annotations

import argparse
import copy
import io
import itertools
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

if __name__ == "__main__":   # an entry point: the CPU thread policy before numpy/torch load (stages/cli.py)
    from stages.cli import start
    start()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from benchmarks.real_data_tables import field_label  # noqa: E402
from stages.shards import shard_files  # noqa: E402
from stages.train_vision import VisionConfig, load_weights_by_position, read_weights  # noqa: E402
from stages.training import Tasks, binary_f1_macro  # noqa: E402
from stages.training.data import IMAGE_FIELDS, raw_examples  # noqa: E402

FIELDS = ("offensive", "abuse_hate", "motivational")   # motivational: Memotion's binary aux field
BATCH = 64


def backbone(weights: str = VisionConfig.weights):
    import timm

    model = timm.create_model("efficientnet_lite0", num_classes=0)
    load_weights_by_position(model, {k: v for k, v in read_weights(weights).items() if not k.startswith("_fc")},
                             head_prefix="classifier.")
    return model.eval()


def eval_transform(model, size: int, training: bool = False):
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({"input_size": (3, size, size), "crop_pct": 1.0, "crop_mode": "squash"}, model=model)
    return create_transform(**config, is_training=training)


def read_split(shards: Path, split: str) -> list[dict]:
    """Every example with an image: id, the image bytes and the binary fields' labels (None = unlabeled)."""
    files = shard_files(shards, split, ("image",))
    out = []
    for raw in raw_examples(files, Tasks.read(["abuse_hate"]), IMAGE_FIELDS + ("json",)):
        meta = json.loads(raw["json"])
        out.append({"id": raw["id"], "image": next(raw[f] for f in IMAGE_FIELDS if f in raw),
                    "labels": {f: field_label(meta, f) for f in FIELDS}})
    return out


def frozen_pass(model, examples: list[dict], size: int, cut: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features, activations before blocks[cut:]) of every example, computed once."""
    transform = eval_transform(model, size)
    pooled, before = [], []
    with torch.inference_mode():
        for start in range(0, len(examples), BATCH):
            images = [Image.open(io.BytesIO(ex["image"])).convert("RGB") for ex in examples[start:start + BATCH]]
            x = torch.stack([transform(ImageOps.mirror(im) if flip else im) for im in images])
            x = model.bn1(model.conv_stem(x))
            for block in model.blocks[:cut]:
                x = block(x)
            before.append(x.half())
            for block in model.blocks[cut:]:
                x = block(x)
            pooled.append(model.global_pool(model.bn2(model.conv_head(x))))
    return torch.cat(pooled), torch.cat(before)


class Upper(torch.nn.Module):
    """The unfrozen top of the backbone (blocks[cut:], conv head) and a linear head."""

    def __init__(self, model, cut: int, classes: int = 2):
        super().__init__()
        self.blocks = copy.deepcopy(model.blocks[cut:])
        self.conv_head, self.bn2 = copy.deepcopy(model.conv_head), copy.deepcopy(model.bn2)
        self.pool, self.head = copy.deepcopy(model.global_pool), torch.nn.Linear(model.num_features, classes)

    def forward(self, x):
        return self.head(self.pool(self.bn2(self.conv_head(self.blocks(x.float())))))


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=2).float()
    return counts.sum() / (2 * counts.clamp(min=1))


def train_head(module: torch.nn.Module, inputs: list[torch.Tensor], labels: torch.Tensor, epochs: int, lr: float,
               weighted: bool, seed: int, evaluate) -> list[dict]:
    """AdamW + linear warmup (10%) and decay, as the stage's Trainer; `inputs` = views to draw from
    per example and epoch (1 = no augmentation, 2 = plain + flipped). Val scores after every epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(labels) // BATCH)
    warmup = max(1, int(0.1 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(labels) if weighted else None)
    scores = []
    for epoch in range(epochs):
        module.train()
        order = torch.randperm(len(labels), generator=generator)
        view = torch.randint(len(inputs), (len(labels),), generator=generator)
        for start in range(0, len(order), BATCH):
            index = order[start:start + BATCH]
            x = torch.stack([inputs[v][i] for v, i in zip(view[index].tolist(), index.tolist())])
            loss = loss_fn(module(x), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        scores.append({"epoch": epoch + 1, **evaluate(module)})
    return scores


def scorer(inputs: torch.Tensor, labels: np.ndarray):
    def evaluate(module) -> dict:
        module.eval()
        with torch.inference_mode():
            probs = torch.cat([module(inputs[s:s + 256]).float().softmax(-1)[:, 1] for s in range(0, len(inputs), 256)])
        probs = probs.numpy()
        return {"auroc": float(roc_auc_score(labels, probs)), "f1_macro": float(binary_f1_macro(labels, probs))}
    return evaluate


def labelled(examples: list[dict], field: str) -> tuple[list[int], torch.Tensor]:
    index = [i for i, ex in enumerate(examples) if ex["labels"][field] is not None]
    return index, torch.tensor([examples[i]["labels"][field] for i in index])


def cached_recipes(model, train: list[dict], val: list[dict], args, log: list[dict]) -> None:
    """probe and partial over resolution x flip x class weighting x lr x epochs x seed, on cached tensors."""
    cut = len(model.blocks) - args.unfrozen_blocks
    for size in args.resolutions:
        start = time.perf_counter()
        pooled, before = frozen_pass(model, train, size, cut, flip=False)
        flipped = frozen_pass(model, train, size, cut, flip=True) if args.flip else None
        val_pooled, val_before = frozen_pass(model, val, size, cut, flip=False)
        seconds = time.perf_counter() - start
        images = len(train) * (2 if args.flip else 1) + len(val)
        print(f"{size}px: frozen pass {seconds:.0f} s ({images / seconds:.1f} images/s)", flush=True)
        for field in FIELDS:
            index, labels = labelled(train, field)
            val_index, val_labels = labelled(val, field)
            grid = itertools.product(("probe", "partial"), (False, True)[:1 + args.flip], (False, True), args.seeds)
            for recipe, flip, weighted, seed in grid:
                if recipe == "partial" and (seed not in args.partial_seeds or not weighted):
                    continue   # the costly one: fewer seeds, class weighting on (the stage's default)
                features = (pooled, flipped[0] if flip else None) if recipe == "probe" else \
                    (before, flipped[1] if flip else None)
                views = [f[index] for f in features if f is not None]
                evaluate = scorer((val_pooled if recipe == "probe" else val_before)[val_index], val_labels.numpy())
                for lr in args.probe_lrs if recipe == "probe" else args.partial_lrs:
                    module = torch.nn.Linear(model.num_features, 2) if recipe == "probe" else Upper(model, cut)
                    started = time.perf_counter()
                    epochs = args.epochs if recipe == "probe" else args.partial_epochs
                    scores = train_head(module, views, labels, epochs, lr, weighted, seed, evaluate)
                    log.append({"recipe": recipe, "field": field, "resolution": size, "flip": flip,
                                "class_weighting": weighted, "lr": lr, "seed": seed, "per_epoch": scores,
                                "seconds": round(time.perf_counter() - started, 1)})
                    best = max(scores, key=lambda s: s["auroc"])
                    print(f"{field} {recipe} {size}px flip={flip} weighted={weighted} lr={lr} seed={seed}: "
                          f"best val AUROC {best['auroc']:.3f} (epoch {best['epoch']}), "
                          f"last {scores[-1]['auroc']:.3f}", flush=True)


def full_finetune(model, train: list[dict], val: list[dict], args, log: list[dict]) -> None:
    """One epoch of full fine-tuning on --full-examples train images (plain + seeded flip), beside a
    linear probe on the same images and epoch; both scored on the whole val split."""
    size, field = args.full_resolution, "offensive"
    index, labels = labelled(train, field)
    rng = np.random.default_rng(0)
    chosen = sorted(rng.choice(len(index), size=min(args.full_examples, len(index)), replace=False).tolist())
    subset = [train[index[i]] for i in chosen]
    sub_labels = labels[chosen]
    transform = eval_transform(model, size)
    val_index, val_labels = labelled(val, field)
    val_pooled, _ = frozen_pass(model, [val[i] for i in val_index], size, len(model.blocks), flip=False)

    def images(examples, flip_seed=None):
        flips = np.random.default_rng(flip_seed).random(len(examples)) < 0.5 if flip_seed is not None else None
        return torch.stack([transform(ImageOps.mirror(im) if flips is not None and flips[i] else im) for i, im in
                            enumerate(Image.open(io.BytesIO(ex["image"])).convert("RGB") for ex in examples)])
    whole = torch.nn.Sequential(copy.deepcopy(model), torch.nn.Linear(model.num_features, 2))
    val_inputs = images([val[i] for i in val_index])
    for lr in args.full_lrs:
        module = copy.deepcopy(whole)
        started = time.perf_counter()
        scores = train_head(module, [images(subset, flip_seed=0)], sub_labels, 1, lr, True, 0,
                            scorer(val_inputs, val_labels.numpy()))
        seconds = time.perf_counter() - started
        log.append({"recipe": "full", "field": field, "resolution": size, "flip": True, "class_weighting": True,
                    "lr": lr, "seed": 0, "train_examples": len(subset), "per_epoch": scores,
                    "seconds": round(seconds, 1)})
        print(f"{field} full {size}px {len(subset)} examples lr={lr}: val AUROC {scores[-1]['auroc']:.3f} "
              f"({seconds:.0f} s incl. val)", flush=True)
    pooled, _ = frozen_pass(model, subset, size, len(model.blocks), flip=False)
    for lr in args.probe_lrs:
        scores = train_head(torch.nn.Linear(model.num_features, 2), [pooled], sub_labels, 1, lr, True, 0,
                            scorer(val_pooled, val_labels.numpy()))
        log.append({"recipe": "probe (same subset, 1 epoch)", "field": field, "resolution": size, "flip": False,
                    "class_weighting": True, "lr": lr, "seed": 0, "train_examples": len(subset), "per_epoch": scores})
        print(f"{field} probe {size}px {len(subset)} examples 1 epoch lr={lr}: val AUROC {scores[-1]['auroc']:.3f}")


def summary(runs: list[dict]) -> str:
    """A markdown table: per field and recipe setting, the mean over seeds of val AUROC after each
    epoch's best and the last epoch, and the best val macro-F1 (what picks the stage's epoch)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        key = (run["field"], run["recipe"], run["resolution"], run["flip"], run["class_weighting"], run["lr"],
               run.get("train_examples", "all"))
        groups.setdefault(key, []).append(run)
    header = ("field", "recipe", "px", "flip", "class weights", "lr", "train examples", "seeds", "epochs",
              "val AUROC best epoch", "val AUROC last epoch", "val macro-F1 best epoch")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in sorted(groups.items(), key=lambda item: tuple(map(str, item[0]))):
        def mean(pick) -> str:
            return f"{np.mean([pick(run['per_epoch']) for run in group]):.3f}"
        cells = [*map(str, key), str(len(group)), str(len(group[0]["per_epoch"])),
                 mean(lambda e: max(s["auroc"] for s in e)), mean(lambda e: e[-1]["auroc"]),
                 mean(lambda e: max(s["f1_macro"] for s in e))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=10, help="val is scored after each, so every shorter run is seen")
    parser.add_argument("--probe-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--partial-lrs", type=float, nargs="+", default=[3e-4])
    parser.add_argument("--partial-epochs", type=int, default=5)
    parser.add_argument("--partial-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--unfrozen-blocks", type=int, default=1)
    parser.add_argument("--no-flip", dest="flip", action="store_false")
    parser.add_argument("--full-examples", type=int, default=0, help="full fine-tuning on this many (0: skip)")
    parser.add_argument("--full-resolution", type=int, default=224)
    parser.add_argument("--full-only", action="store_true", help="only the full fine-tuning comparison")
    parser.add_argument("--full-lrs", type=float, nargs="+", default=[5e-5, 2e-4])
    parser.add_argument("--summary", nargs="+", type=Path, metavar="JSON", help="print the table of earlier runs")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary([run for path in args.summary for run in json.loads(path.read_text())["runs"]]))
        return
    model = backbone()
    train, val = read_split(args.shards, "train"), read_split(args.shards, "val")
    print(f"train {len(train)} val {len(val)} images", flush=True)
    log: list[dict] = []
    try:
        if not args.full_only:
            cached_recipes(model, train, val, args, log)
        if args.full_examples:
            full_finetune(model, train, val, args, log)
    finally:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": log}, indent=1))


if __name__ == "__main__":
    main()
