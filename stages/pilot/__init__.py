"""Stage: the built-in pilot. Writes miniature SYNTHETIC releases of every dataset in their
native layouts, so the whole pipeline runs end to end without the real data. This module plans
the examples; each dataset's pilot module (stages/pilot/<name>.py) writes them as that release's
native files by its `RECIPE` (split slots, class share, text style, writer). The readers in
stages/releases/ never depend on this package, so changing the pilot never reruns ingest on real data.

Every example has a latent class (abusive or not). It decides the dataset's own label fields and
the signal a model can learn: abusive texts use an abusive vocabulary (mild, invented insults and
invented groups), abusive images carry a warm colour band, benign ones neutral words and a cool
band. `text_noise` / `image_noise` flip each cue independently, so the task is learnable but not
trivial. Realistic hazards are planted: byte-identical images under two ids, a near-duplicate
re-encoded smaller, the same text under two ids, plus each release's own quirks (see the writers).

Output is deterministic (same params -> byte-identical files, images included) and streamed: rows
go straight to their files and images are rendered one at a time, so memory does not grow with
`examples_per_dataset`.

    python -m stages.pilot [--out data/pilot] [--seed 0] [--examples-per-dataset 60]
"""
from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from stages import releases
from stages.common import atomic_dir
from stages.config import Part, check_fields, knob, parse
from stages.console import Progress, setup_logging, summary
from stages.pilot import hatecheck, hateful_memes, hatexplain, mami, memotion1, memotion2, mmhs150k, olid
from stages.pilot.kit import BLOCK, PilotExample, PilotImage, PilotRecipe, core_text
from stages.releases import DATASETS, DatasetSpec

log = logging.getLogger(__name__)

# dataset -> how the pilot writes its release (a test may add a recipe for a dataset it registers)
RECIPES: dict[str, PilotRecipe] = {module.__name__.rpartition(".")[2]: module.RECIPE for module in (
    hateful_memes, mami, mmhs150k, memotion1, memotion2, hatexplain, olid, hatecheck)}

MAX_EXAMPLES = 9_000  # per dataset; the id schemes of the writers stay unique up to this
# slot in a block -> hazard copied from the previous example
HAZARDS = {7: "same_image", 13: "near_duplicate", 17: "same_text"}


@dataclass(frozen=True)
class PilotConfig:
    """The `pilot` params group."""
    out: Path = knob(help="output folder (replaced as a whole when it is absent, empty or a previous pilot)")
    seed: int = knob(0, "same seed and sizes -> byte-identical files")
    examples_per_dataset: int = knob(60, "distinct examples per dataset", min=1, max=MAX_EXAMPLES)
    text_noise: float = knob(0.12, "share of examples whose text comes from the other class's vocabulary",
                             min=0.0, max=0.5)
    image_noise: float = knob(0.12, "share of images whose colour cue is the other class's", min=0.0, max=0.5)
    datasets: tuple[str, ...] = knob(DATASETS, "the datasets to write")

    def __post_init__(self):
        check_fields(self, "pilot")
        unknown = sorted(set(self.datasets) - set(releases.SPECS) - set(RECIPES))
        if unknown:
            raise ValueError(f"pilot.datasets: unknown dataset(s) {unknown}; valid names: {', '.join(RECIPES)}")


@dataclass
class PilotResult:
    out: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> original split -> rows
    images: dict[str, int] = field(default_factory=dict)  # dataset -> image files written
    seconds: float = 0.0


# ---------------------------------------------------------------- examples


def block_plan(spec: DatasetSpec, seed: int, block: int) -> list[tuple[str, bool]]:
    """(split, abusive) per slot of one block: shuffled split slots, the class share per split."""
    recipe = RECIPES[spec.name]
    rng = random.Random(f"{seed}/{spec.name}/block{block}")
    slots = [split for split, count in recipe.split_slots.items() for _ in range(count)]
    rng.shuffle(slots)
    abusive = [False] * len(slots)
    for split in recipe.split_slots:
        positions = [i for i, s in enumerate(slots) if s == split]
        count = int(len(positions) * recipe.abusive_share + rng.random())
        for i in rng.sample(positions, count):
            abusive[i] = True
    return list(zip(slots, abusive))


def examples(spec: DatasetSpec, config: PilotConfig) -> Iterator[PilotExample]:
    """The dataset's examples in file order, each generated from its own seed (plus hazards)."""
    previous = None
    plan: list[tuple[str, bool]] = []
    for index in range(config.examples_per_dataset):
        block, slot = divmod(index, BLOCK)
        if slot == 0:
            plan = block_plan(spec, config.seed, block)
        split, abusive = plan[slot]
        seed = f"{config.seed}/{spec.name}/{index}"
        hazard = HAZARDS.get(slot) if previous is not None else None
        if hazard:
            example = hazard_copy(previous, hazard, index, split, seed)
        else:
            example = fresh_example(spec, config, index, split, abusive, seed)
        yield example
        previous = example


def fresh_example(spec: DatasetSpec, config: PilotConfig, index: int, split: str, abusive: bool,
                  seed: str) -> PilotExample:
    rng = random.Random(seed)
    recipe = RECIPES[spec.name]
    text_class = abusive != (rng.random() < config.text_noise)
    warm = abusive != (rng.random() < config.image_noise)
    text = recipe.style(core_text(text_class, recipe.about_women, rng), rng)
    image = None
    if spec.has_images:
        caption = recipe.caption(text, text_class, rng) if recipe.caption else text
        image = PilotImage(seed=f"{seed}/image", warm=warm, caption=caption)
    return PilotExample(index, split, abusive, text, image, seed)


def hazard_copy(previous: PilotExample, hazard: str, index: int, split: str, seed: str) -> PilotExample:
    """A new id (possibly in another split) reusing the previous example's image or text."""
    image = previous.image
    if hazard == "near_duplicate" and image is not None:
        image = replace(image, scale=0.7)
    elif hazard == "same_text" and image is not None:
        image = replace(image, seed=f"{seed}/image")
    return PilotExample(index, split, previous.abusive, previous.text, image, seed, hazard)


# ---------------------------------------------------------------- the stage

README = """SYNTHETIC DATA - a built-in pilot written by `python -m stages.pilot`, not real data.

Each folder is a miniature release of one dataset in its native layout and format (file names,
separators, quoting, line ends, key order and quirks as in the real releases), so the ingest,
split, pack and training stages run end to end without the real datasets. Texts use a small
invented vocabulary (mild insults against invented groups such as "glorbs"; neutral everyday
phrases otherwise); images are drawn shapes with the caption and a colour band (warm for
abusive, cool for benign) with {image_noise:.0%} of the cues flipped; {text_noise:.0%} of the
texts come from the other class's vocabulary. A few ids repeat another example's image
(byte-identical or re-encoded smaller) or text. Nothing here is from the real datasets.

seed: {seed}   examples per dataset: {n}

{table}
"""


def write_pilot(config: PilotConfig, on_example: Callable[[str], None] | None = None) -> PilotResult:
    """Write the miniature releases under config.out/<dataset>/ (atomically: all or nothing)."""
    start = time.perf_counter()
    result = PilotResult(out=config.out)
    with atomic_dir(config.out, "pilot") as tmp:
        for dataset in config.datasets:
            spec = releases.spec(dataset)
            counts: Counter = Counter()
            rows = examples(spec, config)
            if on_example:
                rows = _ticking(rows, dataset, on_example)
            RECIPES[dataset].write(tmp / dataset, rows, counts)
            result.images[dataset] = counts.pop("images", 0)
            result.counts[dataset] = {split: counts[split] for split in RECIPES[dataset].split_slots if counts[split]}
            log.info("%s: %s rows per split, %d images", dataset, result.counts[dataset], result.images[dataset])
        (tmp / "README.txt").write_text(readme(config, result), encoding="utf-8")
    result.seconds = time.perf_counter() - start
    return result


def _ticking(rows: Iterable[PilotExample], dataset: str, on_example: Callable[[str], None]) -> Iterator[PilotExample]:
    for row in rows:
        yield row
        on_example(dataset)


def readme(config: PilotConfig, result: PilotResult) -> str:
    lines = [f"{'dataset':<15}{'images':>8}  rows per original split"]
    for dataset, counts in result.counts.items():
        splits = ", ".join(f"{split} {n}" for split, n in counts.items())
        lines.append(f"{dataset:<15}{result.images[dataset]:>8}  {splits}")
    return README.format(seed=config.seed, n=config.examples_per_dataset, text_noise=config.text_noise,
                         image_noise=config.image_noise, table="\n".join(lines))


def main(argv: list[str] | None = None) -> PilotResult:
    (config,), args = parse("pilot", "Write miniature synthetic releases of every dataset.",
                            [Part("pilot", PilotConfig)], argv)
    setup_logging(args.verbose)
    result = run_with_progress(config)
    print_summary(result)
    return result


def run_with_progress(config: PilotConfig) -> PilotResult:
    total = config.examples_per_dataset * len(config.datasets)
    with Progress("pilot", total) as progress:
        return write_pilot(config, lambda dataset: progress.advance(label=f"pilot {dataset}"))


def print_summary(result: PilotResult) -> None:
    summary(f"pilot written to {result.out} in {result.seconds:.1f} s (synthetic data)",
            ("dataset", "rows per original split", "rows", "images"),
            [(dataset, ", ".join(f"{split} {n}" for split, n in counts.items()), sum(counts.values()),
              result.images[dataset]) for dataset, counts in result.counts.items()], labels=2)
