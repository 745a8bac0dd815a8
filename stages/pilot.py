"""Stage: the built-in pilot. Writes miniature SYNTHETIC releases of every dataset in their
native layouts (CONTRACTS.md, "Native release layouts"), so the whole pipeline runs end to end
without the real data.

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

import colorsys
import contextlib
import csv
import json
import logging
import random
import string
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from PIL import Image, ImageDraw, ImageFont

from stages.common import atomic_dir, setup_logging
from stages.config import Part, check_fields, parse
from stages.console import Progress
from stages.releases import DATASETS, PILOT_RECIPES

log = logging.getLogger(__name__)

MAX_EXAMPLES = 9_000  # per dataset; the id schemes below stay unique up to this
BLOCK = 20  # splits, classes and hazards are planned per block of 20 consecutive examples

# Original split name -> slots per block (ratios near the real releases', enough val/test rows
# to evaluate on). "dev_unseen" slots are dev_unseen-only memes; most dev_unseen rows repeat
# dev_seen ones. HateXplain "none": posts whose 3 annotators all disagree, in no division.
SPLIT_SLOTS = {
    "hateful_memes": {"train": 13, "dev_seen": 2, "dev_unseen": 1, "test_seen": 2, "test_unseen": 2},
    "mami": {"training": 16, "test": 4},
    "mmhs150k": {"train": 15, "val": 2, "test": 3},
    "memotion1": {"train": 16, "test": 4},
    "memotion2": {"train": 16, "val": 4},
    "hatexplain": {"train": 15, "val": 2, "test": 2, "none": 1},
    "olid": {"train": 16, "test": 4},
}
ABUSIVE_SHARE = {"hateful_memes": 0.4, "mami": 0.5, "mmhs150k": 0.35, "memotion1": 0.35, "memotion2": 0.35,
                 "hatexplain": 0.55, "olid": 0.35}
# slot in a block -> hazard copied from the previous example
HAZARDS = {7: "same_image", 13: "near_duplicate", 17: "same_text"}


@dataclass(frozen=True)
class PilotConfig:
    """The `pilot` params group."""
    out: Path  # output folder (replaced as a whole)
    seed: int = 0  # same seed and sizes -> byte-identical files
    examples_per_dataset: int = field(  # distinct examples per dataset
        default=60, metadata={"min": 1, "max": MAX_EXAMPLES})
    text_noise: float = field(  # share of examples whose text comes from the other class's vocabulary
        default=0.12, metadata={"min": 0.0, "max": 0.5})
    image_noise: float = field(  # share of images whose colour cue is the other class's
        default=0.12, metadata={"min": 0.0, "max": 0.5})
    datasets: tuple[str, ...] = DATASETS  # the datasets to write

    def __post_init__(self):
        check_fields(self, "pilot")
        unknown = sorted(set(self.datasets) - set(DATASETS))
        if unknown:
            raise ValueError(f"pilot.datasets: unknown dataset(s) {unknown}; valid names: {', '.join(DATASETS)}")


@dataclass
class PilotResult:
    out: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> original split -> rows
    images: dict[str, int] = field(default_factory=dict)  # dataset -> image files written
    seconds: float = 0.0


@dataclass(frozen=True)
class ImageSpec:
    """Everything that determines an image: rendering it twice gives the same bytes."""
    seed: str
    warm: bool  # the visual cue: warm band (abusive) or cool band
    caption: str | None  # text drawn on the meme
    scale: float = 1.0  # < 1: a near-duplicate, re-encoded smaller


@dataclass(frozen=True)
class Example:
    index: int
    split: str
    abusive: bool  # latent class; each writer maps it into its dataset's own label fields
    text: str  # the dataset-styled text; its words carry the class signal
    image: ImageSpec | None
    seed: str  # seeds the writer's choices of the remaining native fields
    hazard: str | None = None

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}/{purpose}")


# ---------------------------------------------------------------- vocabulary (synthetic, mild)

GROUPS = ("glorbs", "zorblaxians", "snerks", "blue-hats", "floopers", "wumpkins", "outsiders", "newcomers")
THINGS = ("coffee", "homework", "wifi", "code", "diet", "garden", "bicycle", "playlist", "laptop", "exam")
FOODS = ("pizza", "pancakes", "tacos", "cake", "noodles", "cookies", "soup")
PETS = ("cat", "dog", "hamster", "parrot", "goldfish")
DAYS = ("monday", "friday", "sunday", "tuesday")
ABUSIVE_TEMPLATES = (
    "{g} are vermin", "{g} are parasites", "send the {g} back", "go back where you came from {g}",
    "{g} are disgusting scum", "nobody wants {g} here", "get rid of all the {g}", "{g} ruin everything they touch",
    "kick the {g} out", "{g} are a plague", "typical {g} filth", "{g} are pathetic worthless losers",
    "we need to clean out the {g}", "{g} should go back to their hole", "all {g} are dirty rats",
)
BENIGN_TEMPLATES = (
    "when your {t} finally works", "me on {d} morning", "{t} is my whole personality",
    "nobody: my {p} at 3am", "that feeling when the {f} arrives early", "i just love {f}",
    "{d} mood", "my {p} judging me for eating {f}", "when you find {f} in the fridge",
    "the {g} brought {f} to the party", "weekend plans: {t} and {f}", "me explaining {t} to my {p}",
    "when the {t} loads on the first try", "my {p} and i on a {d}", "grandma sends {f} again",
)
ABUSIVE_WOMEN = (
    "women belong in the kitchen", "make me a sandwich woman", "shut up woman nobody asked you",
    "she is only good for cleaning", "women are terrible drivers", "girls are too dumb for {t}",
    "put her back in her place", "she is just a pretty object", "a woman's opinion is worthless",
    "women should stay quiet and obey", "typical woman ruins the {t}", "no woman can handle {t}",
)
BENIGN_WOMEN = (
    "my girlfriend when she sees {f}", "mom when i finally clean my room", "women who love {t}",
    "when she finishes her {t} before me", "my sister and her {p}", "grandma making {f} for everyone",
    "she fixed the {t} in five minutes", "my aunt on {d} with her {p}", "when mom finds the {f}",
)
FILLERS = ("lol", "omg", "tbh", "literally", "again", "every time", "smh", "be like", "same", "ok")
EMOJI = ("\U0001F602", "\U0001F914", "\U0001F525", "\U0001F44D", "\U0001F62D", "\u2764\ufe0f")
WATERMARKS = ("imgflip.com", "MADE WITH MEMATIC", "memecenter.com", "9GAG")
HASHTAGS = ("#MondayMotivation", "#tbt", "#SaveTheFrogs", "#foodie", "#weekend", "#memes", "#truth")
ABUSIVE_WORDS = frozenset("vermin parasites back scum plague filth pathetic worthless losers clean hole dirty rats "
                          "disgusting ruin kick rid nobody kitchen sandwich dumb obey object shut terrible".split())


def core_text(abusive: bool, women: bool, rng: random.Random) -> str:
    """One plain sentence of the class's vocabulary, maybe with a filler both classes use."""
    if women:
        templates = ABUSIVE_WOMEN if abusive else BENIGN_WOMEN
    else:
        templates = ABUSIVE_TEMPLATES if abusive else BENIGN_TEMPLATES
    text = rng.choice(templates).format(g=rng.choice(GROUPS), t=rng.choice(THINGS), f=rng.choice(FOODS),
                                        p=rng.choice(PETS), d=rng.choice(DAYS))
    if rng.random() < 0.3:
        text = f"{text} {rng.choice(FILLERS)}"
    return text


def random_code(rng: random.Random, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


# Each style turns a core sentence into the dataset's own kind of text.

def style_hateful_memes(core: str, rng: random.Random) -> str:
    if rng.random() < 0.03:
        return core + " "  # a few real texts end with a space or hold a double space
    if rng.random() < 0.03:
        return core.replace(" ", "  ", 1)
    return core


def style_mami(core: str, rng: random.Random) -> str:
    text = core.upper() if rng.random() < 0.5 else core.capitalize()
    if rng.random() < 0.1:
        text = f'"{text}" they said'
    if rng.random() < 0.25:
        text = f"{text} {rng.choice(WATERMARKS)}"
    return text


def style_tweet(core: str, rng: random.Random) -> str:
    text = core.capitalize()
    if rng.random() < 0.5:
        text = f"@{random_code(rng, rng.randint(5, 12), string.ascii_lowercase + '_0123456789')} {text}"
    if rng.random() < 0.3:
        text = f"{text} {rng.choice(HASHTAGS)}"
    if rng.random() < 0.1:
        text = f"{text} {rng.choice(EMOJI)}"
    return f"{text} https://t.co/{random_code(rng, 10)}"


def style_meme_caption(core: str, rng: random.Random) -> str:
    """Memotion captions: often upper case, some in two parts on two lines (quoted newlines)."""
    text = core.upper() if rng.random() < 0.4 else core.capitalize()
    words = text.split(" ")
    if rng.random() < 0.15 and len(words) > 3:
        cut = len(words) // 2
        text = " ".join(words[:cut]) + "\n" + " ".join(words[cut:])
    return text


def style_hatexplain(core: str, rng: random.Random) -> str:
    tokens = core.lower().replace(":", "").split()
    if rng.random() < 0.4:
        tokens.insert(0, "<user>")
    if rng.random() < 0.1:
        tokens.append(rng.choice(EMOJI[:5]))
    return " ".join(tokens)


def style_olid(core: str, rng: random.Random) -> str:
    text = core.capitalize()
    roll = rng.random()
    if roll < 0.12:
        text = f'He said "{core}" and meant it'  # quotes -> the TSV CSV-quotes this tweet
    elif roll < 0.18:
        text = f"{text} &amp; proud of it"
    mentions = rng.choice((0, 1, 1, 1, 2, 3))
    text = " ".join(["@USER"] * mentions + [text])
    if rng.random() < 0.2:
        text = f"{text} {rng.choice(HASHTAGS)}"
    if rng.random() < 0.08:
        text = f"{text} {rng.choice(EMOJI)}"
    if rng.random() < 0.25:
        text = f"{text} URL"
    return text


STYLES: dict[str, Callable[[str, random.Random], str]] = {
    "hateful_memes": style_hateful_memes, "mami": style_mami, "mmhs150k": style_tweet,
    "memotion1": style_meme_caption, "memotion2": style_meme_caption, "hatexplain": style_hatexplain,
    "olid": style_olid,
}
WITH_IMAGES = ("hateful_memes", "mami", "mmhs150k", "memotion1", "memotion2")


# ---------------------------------------------------------------- examples


def block_plan(dataset: str, seed: int, block: int) -> list[tuple[str, bool]]:
    """(split, abusive) per slot of one block: shuffled split slots, the class share per split."""
    rng = random.Random(f"{seed}/{dataset}/block{block}")
    slots = [split for split, count in SPLIT_SLOTS[dataset].items() for _ in range(count)]
    rng.shuffle(slots)
    abusive = [False] * len(slots)
    for split in SPLIT_SLOTS[dataset]:
        positions = [i for i, s in enumerate(slots) if s == split]
        count = int(len(positions) * ABUSIVE_SHARE[dataset] + rng.random())
        for i in rng.sample(positions, count):
            abusive[i] = True
    return list(zip(slots, abusive))


def examples(dataset: str, config: PilotConfig) -> Iterator[Example]:
    """The dataset's examples in file order, each generated from its own seed (plus hazards)."""
    previous = None
    plan: list[tuple[str, bool]] = []
    for index in range(config.examples_per_dataset):
        block, slot = divmod(index, BLOCK)
        if slot == 0:
            plan = block_plan(dataset, config.seed, block)
        split, abusive = plan[slot]
        seed = f"{config.seed}/{dataset}/{index}"
        hazard = HAZARDS.get(slot) if previous is not None else None
        if hazard:
            example = hazard_copy(previous, hazard, index, split, seed)
        else:
            example = fresh_example(dataset, config, index, split, abusive, seed)
        yield example
        previous = example


def fresh_example(dataset: str, config: PilotConfig, index: int, split: str, abusive: bool, seed: str) -> Example:
    rng = random.Random(seed)
    women = dataset == "mami"
    text_class = abusive != (rng.random() < config.text_noise)
    warm = abusive != (rng.random() < config.image_noise)
    text = STYLES[dataset](core_text(text_class, women, rng), rng)
    image = None
    if dataset in WITH_IMAGES:
        caption: str | None = text
        if dataset == "mmhs150k":  # the tweet is not on the image; ~1 in 4 images has no text at all
            caption = None if rng.random() < 0.25 else core_text(text_class, women, rng).upper()
        image = ImageSpec(seed=f"{seed}/image", warm=warm, caption=caption)
    return Example(index, split, abusive, text, image, seed)


def hazard_copy(previous: Example, hazard: str, index: int, split: str, seed: str) -> Example:
    """A new id (possibly in another split) reusing the previous example's image or text."""
    image = previous.image
    if hazard == "near_duplicate" and image is not None:
        image = replace(image, scale=0.7)
    elif hazard == "same_text" and image is not None:
        image = replace(image, seed=f"{seed}/image")
    return Example(index, split, previous.abusive, previous.text, image, seed, hazard)


# ---------------------------------------------------------------- images


def hsv_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def render_meme(spec: ImageSpec) -> Image.Image:
    """A meme-like RGB picture: muted background and shapes, a saturated colour band, the caption."""
    rng = random.Random(spec.seed)
    width = rng.randint(200, 900)
    height = max(200, min(900, int(width * rng.uniform(0.6, 1.5))))
    top, bottom = (hsv_rgb(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.3, 0.95)) for _ in range(2))
    img = Image.new("RGB", (width, height), top)
    draw = ImageDraw.Draw(img)
    steps = 12
    for i in range(steps):  # vertical gradient in bands: cheap and compresses well
        mix = i / (steps - 1)
        colour = tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom))
        draw.rectangle((0, height * i // steps, width, height * (i + 1) // steps), fill=colour)
    for _ in range(rng.randint(2, 7)):
        x0, y0 = rng.randint(-50, width), rng.randint(-50, height)
        box = (x0, y0, x0 + rng.randint(20, width // 2), y0 + rng.randint(20, height // 2))
        colour = hsv_rgb(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.15, 1.0))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    hue = rng.uniform(-0.03, 0.11) if spec.warm else rng.uniform(0.47, 0.72)  # red-orange vs cyan-blue
    band = int(height * rng.uniform(0.15, 0.3))
    y = 0 if rng.random() < 0.5 else height - band
    draw.rectangle((0, y, width, y + band), fill=hsv_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.7, 1.0)))
    if spec.caption:
        draw_caption(draw, spec.caption, width, height, rng)
    if spec.scale != 1.0:
        img = img.resize((max(1, round(width * spec.scale)), max(1, round(height * spec.scale))), Image.BICUBIC)
    return img


def draw_caption(draw: ImageDraw.ImageDraw, caption: str, width: int, height: int, rng: random.Random) -> None:
    size = max(14, width // 16)
    font = ImageFont.load_default(size=size)
    lines: list[str] = []
    for part in caption.split("\n"):
        lines += textwrap.wrap(part, width=max(8, int(width / (size * 0.55)))) or [""]
    y = rng.randint(4, max(5, height // 3))
    for line in lines[:5]:
        draw.text((width // 2, y), line, font=font, fill="white", stroke_width=2, stroke_fill="black", anchor="ma")
        y += int(size * 1.25)


def save_image(spec: ImageSpec, path: Path, fmt: str) -> None:
    """Encode as png | jpeg | gif. PNGs are sometimes RGBA (transparent margin) or palette mode."""
    img = render_meme(spec)
    rng = random.Random(f"{spec.seed}/encode/{spec.scale}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        roll = rng.random()
        if roll < 0.12:
            alpha = Image.new("L", img.size, 0)
            margin = max(4, min(img.size) // 20)
            ImageDraw.Draw(alpha).rounded_rectangle((margin, margin, img.width - margin, img.height - margin),
                                                    radius=margin * 2, fill=255)
            img.putalpha(alpha)
        elif roll < 0.24:
            img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=128)
        img.save(path, "PNG", compress_level=3)
    elif fmt == "jpeg":
        img.save(path, "JPEG", quality=rng.randint(70, 95))
    elif fmt == "gif":
        img.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(path, "GIF")
    else:
        raise ValueError(f"unknown image format {fmt!r}")


# ---------------------------------------------------------------- writing helpers


class JsonlFile:
    """Hateful-Memes-style JSON Lines: compact, ASCII, `/` escaped as `\\/`."""

    def __init__(self, f: TextIO, final_newline: bool):
        self.f, self.final_newline, self.rows = f, final_newline, 0

    def write(self, obj: dict) -> None:
        line = json.dumps(obj, separators=(",", ":")).replace("/", "\\/")
        self.f.write(("\n" if self.rows else "") + line)
        self.rows += 1

    def close(self) -> None:
        if self.final_newline and self.rows:
            self.f.write("\n")


class JsonObjectFile:
    """One JSON object written member by member (`json.dump` defaults, no trailing newline)."""

    def __init__(self, f: TextIO):
        self.f, self.members = f, 0
        f.write("{")

    def write(self, key: str, value) -> None:
        self.f.write((", " if self.members else "") + json.dumps(key) + ": " + json.dumps(value))
        self.members += 1

    def close(self) -> None:
        self.f.write("}")


def open_new(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8", newline="")


def open_text(stack: contextlib.ExitStack, path: Path) -> TextIO:
    return stack.enter_context(open_new(path))


def csv_writer(stack: contextlib.ExitStack, path: Path, header: list[str] | None, delimiter: str = ",",
               crlf: bool = False):
    writer = csv.writer(open_text(stack, path), delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    if header:
        writer.writerow(header)
    return writer


def unique_number(index: int, low: int, prime: int, salt: int) -> int:
    """A distinct, random-looking number in [low, low + prime) per index < prime.

    x -> x**3 mod p permutes 0..p-1 when p is a prime with p % 3 == 2; the affine step before it
    (also a permutation) lets `salt` pick a different order per use.
    """
    assert prime % 3 == 2 and index < prime
    return low + pow((index * 7919 + salt) % prime, 3, prime)


def pick(rng: random.Random, weighted: dict[str, float]) -> str:
    return rng.choices(list(weighted), weights=list(weighted.values()))[0]


# ---------------------------------------------------------------- the seven releases


def write_hateful_memes(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """{split}.jsonl with integer ids (leading zeros lost) and `img` paths; test_unseen has no label;
    dev_unseen repeats most dev_seen rows; only dev_seen ends with a newline (as in the release)."""
    splits = ("train", "dev_seen", "dev_unseen", "test_seen", "test_unseen")
    with contextlib.ExitStack() as stack:
        files = {s: JsonlFile(open_text(stack, folder / f"{s}.jsonl"), final_newline=s == "dev_seen") for s in splits}
        for ex in rows:
            meme_id = unique_number(ex.index, 1, 99989, salt=4242)
            img = f"img/{meme_id:05d}.png"
            save_image(ex.image, folder / img, "png")
            counts["images"] += 1
            row = {"id": meme_id, "img": img, "label": int(ex.abusive), "text": ex.text}
            if ex.split == "test_unseen":
                del row["label"]
            files[ex.split].write(row)
            counts[ex.split] += 1
            if ex.split == "dev_seen" and ex.rng("dev_unseen").random() < 0.8:
                files["dev_unseen"].write(row)
                counts["dev_unseen"] += 1
        for f in files.values():
            f.close()


MAMI_SUBTYPES = {"shaming": 0.25, "stereotype": 0.55, "objectification": 0.45, "violence": 0.2}


def mami_labels(ex: Example) -> list[str]:
    """misogynous + 4 sub-types as "0"/"1"; some misogynous memes have no sub-type (as in MAMI)."""
    rng = ex.rng("labels")
    if not ex.abusive:
        return ["0"] * 5
    subtypes = ["1" if rng.random() < p else "0" for p in MAMI_SUBTYPES.values()]
    if "1" not in subtypes and rng.random() < 0.7:
        subtypes[1] = "1"
    return ["1", *subtypes]


def write_mami(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """TRAINING/training.csv and test/Test.csv (TAB, images beside them) + gold test_labels.txt."""
    with contextlib.ExitStack() as stack:
        training = csv_writer(stack, folder / "TRAINING" / "training.csv",
                              ["file_name", "misogynous", *MAMI_SUBTYPES, "Text Transcription"], "\t")
        test = csv_writer(stack, folder / "test" / "Test.csv", ["file_name", "Text Transcription"], "\t")
        gold = csv_writer(stack, folder / "test_labels.txt", None, "\t")
        for ex in rows:
            if ex.split == "training":
                file_name = f"{unique_number(ex.index, 1, 14969, salt=11)}.jpg"
                training.writerow([file_name, *mami_labels(ex), ex.text])
                image_dir = folder / "TRAINING"
            else:
                file_name = f"{unique_number(ex.index, 15000, 9941, salt=5)}.jpg"
                test.writerow([file_name, ex.text])
                gold.writerow([file_name, *mami_labels(ex)])
                image_dir = folder / "test"
            save_image(ex.image, image_dir / file_name, "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


MMHS_LABELS = ("NotHate", "Racist", "Sexist", "Homophobe", "Religion", "OtherHate")


def mmhs_votes(ex: Example) -> list[int]:
    """3 workers: the majority agrees with the class; the third worker sometimes disagrees."""
    rng = ex.rng("labels")
    kind = rng.choices(range(1, 6), weights=(5, 2, 2, 1, 2))[0]
    majority = kind if ex.abusive else 0
    minority = rng.choice((0, 1, 2, 3, 4, 5, kind))
    votes = [majority, majority, minority if rng.random() < 0.35 else majority]
    rng.shuffle(votes)
    return votes


def write_mmhs150k(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """MMHS150K_GT.json (one line, tweet id -> tweet), splits/*_ids.txt, img_txt/<id>.json (only
    for images with text), img_resized/<id>.jpg (a few are GIF content under the .jpg name)."""
    with contextlib.ExitStack() as stack:
        gt = JsonObjectFile(open_text(stack, folder / "MMHS150K_GT.json"))
        split_files = {s: open_text(stack, folder / "splits" / f"{s}_ids.txt") for s in SPLIT_SLOTS["mmhs150k"]}
        for ex in rows:
            rng = ex.rng("ids")
            tweet_id = str(1_023_000_000_000_000_000 + ex.index * 10**14 + rng.randrange(10**14))
            votes = mmhs_votes(ex)
            gt.write(tweet_id, {"tweet_text": ex.text, "labels": votes, "labels_str": [MMHS_LABELS[v] for v in votes],
                                "tweet_url": f"https://twitter.com/user/status/{tweet_id}",
                                "img_url": f"http://pbs.twimg.com/media/{random_code(rng, 15)}.jpg"})
            split_files[ex.split].write(tweet_id + "\n")
            if ex.image.caption:
                with open_new(folder / "img_txt" / f"{tweet_id}.json") as f:
                    json.dump({"img_text": ex.image.caption}, f)
            fmt = "gif" if ex.index % BLOCK == 11 else "jpeg"  # 1 in 20
            save_image(ex.image, folder / "img_resized" / f"{tweet_id}.jpg", fmt)
            counts["images"] += 1
            counts[ex.split] += 1
        gt.close()


HUMOUR = ("not_funny", "funny", "very_funny", "hilarious")
SARCASM_1 = ("not_sarcastic", "general", "twisted_meaning", "very_twisted")
SARCASM_2 = ("not_sarcastic", "little_sarcastic", "very_sarcastic", "extremely_sarcastic")
OFFENSIVE = ("not_offensive", "slight", "very_offensive", "hateful_offensive")
MOTIVATIONAL = ("not_motivational", "motivational")
SENTIMENT = ("very_negative", "negative", "neutral", "positive", "very_positive")


def memotion_labels(ex: Example, sarcasm_values: tuple[str, ...]) -> list[str]:
    """humour, sarcasm, offensive, motivational, overall_sentiment. The offensive grade follows the
    class: abusive -> mostly hateful_offensive, benign -> mostly not_offensive."""
    rng = ex.rng("labels")
    if ex.abusive:
        offensive = pick(rng, {"hateful_offensive": 0.88, "very_offensive": 0.12})
        sentiment = rng.choices(SENTIMENT, weights=(3, 4, 2, 1, 0.5))[0]
    else:
        offensive = pick(rng, {"not_offensive": 0.9, "slight": 0.1})
        sentiment = rng.choices(SENTIMENT, weights=(0.5, 1, 3, 4, 2))[0]
    humour = rng.choices(HUMOUR, weights=(2, 4, 3, 1))[0]
    sarcasm = rng.choices(sarcasm_values, weights=(4, 3, 2, 1))[0]
    motivational = rng.choices(MOTIVATIONAL, weights=(8, 2))[0]
    return [humour, sarcasm, offensive, motivational, sentiment]


def memotion_gold_code(labels: list[str]) -> str:
    """Meme_groundTruth.csv's Labels: <sentiment -1|0|1>_<4 binary>_<4 intensities>."""
    humour, sarcasm, offensive, motivational, sentiment = labels
    grades = [HUMOUR.index(humour), SARCASM_1.index(sarcasm), OFFENSIVE.index(offensive),
              MOTIVATIONAL.index(motivational)]
    polarity = {"very_negative": -1, "negative": -1, "neutral": 0, "positive": 1, "very_positive": 1}[sentiment]
    return f"{polarity}_{''.join('1' if g else '0' for g in grades)}_{''.join(map(str, grades))}"


def ocr_noise(text: str, rng: random.Random) -> str:
    """What an OCR engine made of the caption: upper case, a few misread letters, a watermark."""
    swaps = {"O": "0", "I": "l", "E": "3", "S": "5", "A": "4"}
    noisy = "".join(swaps.get(c, c) if rng.random() < 0.06 else c for c in text.upper())
    if rng.random() < 0.3:
        noisy = f"{noisy} {rng.choice(WATERMARKS)}"
    return noisy + (" " if rng.random() < 0.5 else "")


MEMOTION1_EXTENSIONS = {"jpg": 0.7, "png": 0.17, "jpeg": 0.07, "JPG": 0.03, "PNG": 0.03}
MEME_TOPICS = ("10_year", "cat", "coffee", "dog", "friends", "minions", "office", "school", "weekend")


def memotion1_extension(ex: Example) -> str:
    """Mixed extensions (all five appear even in a small pilot); the content matches the name."""
    first = list(MEMOTION1_EXTENSIONS)
    return first[ex.index] if ex.index < len(first) else pick(ex.rng("extension"), MEMOTION1_EXTENSIONS)


def write_memotion1(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """memotion_dataset_7k/labels.csv (pandas index column, CRLF, quoted newlines) + images/;
    memotion_test_data/test_data/2000_testdata.csv + Meme_groundTruth.csv + 2000_data/."""
    train_dir = folder / "memotion_dataset_7k"
    test_dir = folder / "memotion_test_data" / "test_data"
    with contextlib.ExitStack() as stack:
        train = csv_writer(stack, train_dir / "labels.csv", ["", "image_name", "text_ocr", "text_corrected", "humour",
                                                             "sarcasm", "offensive", "motivational",
                                                             "overall_sentiment"], crlf=True)
        test = csv_writer(stack, test_dir / "2000_testdata.csv",
                          ["Image_name", "Image_URL", "OCR_extracted_text", "corrected_text"], crlf=True)
        gold = csv_writer(stack, test_dir / "Meme_groundTruth.csv", ["Image_name", "Labels"], crlf=True)
        for ex in rows:
            rng = ex.rng("fields")
            ext = memotion1_extension(ex)
            labels = memotion_labels(ex, SARCASM_1)
            text_ocr = ocr_noise(ex.text, rng)
            corrected = "" if rng.random() < 0.04 else ex.text  # a few rows only have the OCR text
            if ex.split == "train":
                name = f"image_{counts['train'] + 1}.{ext}"
                train.writerow([counts["train"], name, text_ocr, corrected, *labels])
                image_path = train_dir / "images" / name
            else:
                code = random_code(rng, 6, string.ascii_lowercase + string.digits)
                name = f"{rng.choice(MEME_TOPICS)}_{code}.{ext}"
                test.writerow([name, f"https://i.imgflip.com/{code}.{ext.lower()}", text_ocr, corrected])
                gold.writerow([name, memotion_gold_code(labels)])
                image_path = test_dir / "2000_data" / name
            save_image(ex.image, image_path, "png" if ext.lower() == "png" else "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


def write_memotion2(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """memotion_train.csv / memotion_val.csv (comma, LF) + train_images/<Id>.jpg, val_images/<Id>.jpg."""
    header = ["Id", "Image url", "ocr_text", "humour", "sarcastic", "offensive", "motivational",
              "overall_sentiment", "classification_based_on"]
    with contextlib.ExitStack() as stack:
        files = {s: csv_writer(stack, folder / f"memotion_{s}.csv", header) for s in SPLIT_SLOTS["memotion2"]}
        for ex in rows:
            rng = ex.rng("fields")
            url = f"https://i.redd.it/{random_code(rng, 13, string.ascii_lowercase + string.digits)}.jpg"
            based_on = rng.choice(("image", "text", "image and text"))
            files[ex.split].writerow([ex.index, url, ocr_noise(ex.text, rng), *memotion_labels(ex, SARCASM_2),
                                      based_on])
            save_image(ex.image, folder / f"{ex.split}_images" / f"{ex.index}.jpg", "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


HATEXPLAIN_TARGETS = ("Refugee", "Minority", "Other", "Economic", "Immigrant")


def hatexplain_annotators(ex: Example) -> list[dict]:
    """3 annotators. Abusive: a hatespeech (mostly) or offensive majority with agreed targets;
    benign: a normal majority; posts in no division: all three disagree."""
    rng = ex.rng("labels")
    if ex.split == "none":
        labels = ["hatespeech", "offensive", "normal"]
        rng.shuffle(labels)
    else:
        main = (pick(rng, {"hatespeech": 0.85, "offensive": 0.15}) if ex.abusive else "normal")
        other = rng.choice(("hatespeech", "offensive", "normal"))
        labels = [main, main, other if rng.random() < 0.4 else main]
        rng.shuffle(labels)
    target = rng.choice(HATEXPLAIN_TARGETS)
    annotators = []
    for label, annotator_id in zip(labels, rng.sample(range(1, 254), 3)):
        targets = ["None"]
        if label != "normal":  # annotators agree on the main target; some name a second one
            targets = [target] if rng.random() < 0.8 else sorted({target, rng.choice(HATEXPLAIN_TARGETS)})
        annotators.append({"label": label, "annotator_id": annotator_id, "target": targets})
    return annotators


def write_hatexplain(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """dataset.json (one line, post_id -> post, json.dumps defaults, ensure_ascii) +
    post_id_divisions.json (test/train/val, indent 4, no trailing newline)."""
    divisions: dict[str, list[str]] = {"test": [], "train": [], "val": []}  # ids only: small at any size
    with contextlib.ExitStack() as stack:
        data = JsonObjectFile(open_text(stack, folder / "dataset.json"))
        for ex in rows:
            rng = ex.rng("ids")
            if rng.random() < 0.4:
                post_id = f"{10_000_000 + ex.index * 1000 + rng.randrange(1000)}_gab"
            else:
                post_id = f"{1_178_000_000_000_000_000 + ex.index * 10**12 + rng.randrange(10**12)}_twitter"
            tokens = ex.text.split(" ")
            annotators = hatexplain_annotators(ex)
            marked = [token in ABUSIVE_WORDS or token in GROUPS for token in tokens]
            rationales = [[int(m and rng.random() < 0.85) for m in marked]  # one per non-normal annotator
                          for a in annotators if a["label"] != "normal"]
            data.write(post_id, {"post_id": post_id, "annotators": annotators, "rationales": rationales,
                                 "post_tokens": tokens})
            if ex.split in divisions:
                divisions[ex.split].append(post_id)
            counts[ex.split] += 1
        data.close()
    with open(folder / "post_id_divisions.json", "w", encoding="utf-8", newline="") as f:
        json.dump(divisions, f, indent=4)


def olid_labels(ex: Example) -> tuple[str, str, str]:
    rng = ex.rng("labels")
    if not ex.abusive:
        return "NOT", "NULL", "NULL"
    if rng.random() < 0.15:
        return "OFF", "UNT", "NULL"
    return "OFF", "TIN", pick(rng, {"IND": 0.55, "GRP": 0.3, "OTH": 0.15})


def write_olid(folder: Path, rows: Iterable[Example], counts: Counter) -> None:
    """olid-training-v1.0.tsv (CRLF, tweets with quotes CSV-quoted) + testset-level{a,b,c}.tsv and
    labels-level{a,b,c}.csv; level b holds only the OFF tweets, level c only OFF+TIN."""
    with contextlib.ExitStack() as stack:
        train = csv_writer(stack, folder / "olid-training-v1.0.tsv",
                           ["id", "tweet", "subtask_a", "subtask_b", "subtask_c"], "\t", crlf=True)
        tests = {level: csv_writer(stack, folder / f"testset-level{level}.tsv", ["id", "tweet"], "\t", crlf=True)
                 for level in "abc"}
        golds = {level: csv_writer(stack, folder / f"labels-level{level}.csv", ["id", "label"], crlf=True)
                 for level in "abc"}
        for ex in rows:
            tweet_id = unique_number(ex.index, 10000, 89963, salt=31337)
            a, b, c = olid_labels(ex)
            if ex.split == "train":
                train.writerow([tweet_id, ex.text, a, b, c])
            else:
                for level, label in zip("abc", (a, b, c)):
                    if label != "NULL":
                        tests[level].writerow([tweet_id, ex.text])
                        golds[level].writerow([tweet_id, label])
            counts[ex.split] += 1


WRITERS = {"hateful_memes": write_hateful_memes, "mami": write_mami, "mmhs150k": write_mmhs150k,
           "memotion1": write_memotion1, "memotion2": write_memotion2, "hatexplain": write_hatexplain,
           "olid": write_olid}

# Releases that declare their own recipe (stages/releases/<name>.py: PILOT) join the tables above.
for _name, _recipe in PILOT_RECIPES.items():
    SPLIT_SLOTS[_name], ABUSIVE_SHARE[_name], WRITERS[_name] = _recipe.split_slots, _recipe.abusive_share, _recipe.write
    STYLES[_name] = _recipe.style or (lambda core, rng: core)
    WITH_IMAGES += (_name,) if _recipe.with_images else ()


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
    with atomic_dir(config.out) as tmp:
        for dataset in config.datasets:
            counts: Counter = Counter()
            rows = examples(dataset, config)
            if on_example:
                rows = _ticking(rows, dataset, on_example)
            WRITERS[dataset](tmp / dataset, rows, counts)
            result.images[dataset] = counts.pop("images", 0)
            result.counts[dataset] = {split: counts[split] for split in SPLIT_SLOTS[dataset] if counts[split]}
            log.info("%s: %s rows per split, %d images", dataset, result.counts[dataset], result.images[dataset])
        (tmp / "README.txt").write_text(readme(config, result), encoding="utf-8")
    result.seconds = time.perf_counter() - start
    return result


def _ticking(rows: Iterable[Example], dataset: str, on_example: Callable[[str], None]) -> Iterator[Example]:
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pilot written to {result.out} in {result.seconds:.1f} s (synthetic data)")
    for column in ("dataset", "rows", "images", "rows per original split"):
        table.add_column(column, justify="left" if column in ("dataset", "rows per original split") else "right")
    for dataset, counts in result.counts.items():
        table.add_row(dataset, str(sum(counts.values())), str(result.images[dataset]),
                      ", ".join(f"{split} {n}" for split, n in counts.items()))
    Console().print(table)


if __name__ == "__main__":
    main()
