"""What the built-in pilot's release writers share (stages/pilot/__init__.py plans the examples;
each stages/pilot/<dataset>.py writes its release's native files from them): the example, image
and dataset recipes, the synthetic vocabulary, image rendering and the file writers' helpers.

Everything here is deterministic: an example or image recipe gives the same bytes every time.
"""
from __future__ import annotations

import colorsys
import contextlib
import csv
import json
import random
import string
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from PIL import Image, ImageDraw, ImageFont

BLOCK = 20  # splits, classes and hazards are planned per block of 20 consecutive examples


@dataclass(frozen=True)
class PilotImage:
    """Everything that determines an image: rendering it twice gives the same bytes."""
    seed: str
    warm: bool  # the visual cue: warm band (abusive) or cool band
    caption: str | None  # text drawn on the meme
    scale: float = 1.0  # < 1: a near-duplicate, re-encoded smaller


@dataclass(frozen=True)
class PilotExample:
    index: int
    split: str
    abusive: bool  # latent class; each writer maps it into its dataset's own label fields
    text: str  # the dataset-styled text; its words carry the class signal
    image: PilotImage | None
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


def maybe_append(text: str, rng: random.Random, share: float, choices: tuple[str, ...]) -> str:
    """`text` plus one of `choices` for a `share` of the texts (a hashtag, an emoji, a watermark)."""
    return f"{text} {rng.choice(choices)}" if rng.random() < share else text


def ocr_noise(text: str, rng: random.Random) -> str:
    """What an OCR engine made of the caption: upper case, a few misread letters, a watermark."""
    swaps = {"O": "0", "I": "l", "E": "3", "S": "5", "A": "4"}
    noisy = "".join(swaps.get(c, c) if rng.random() < 0.06 else c for c in text.upper())
    return maybe_append(noisy, rng, 0.3, WATERMARKS) + (" " if rng.random() < 0.5 else "")


# ---------------------------------------------------------------- images


def hsv_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return round(r * 255), round(g * 255), round(b * 255)


def render_meme(spec: PilotImage) -> Image.Image:
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


def save_image(spec: PilotImage, path: Path, fmt: str) -> None:
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


# ---------------------------------------------------------------- a dataset's recipe


def _as_is(core: str, rng: Any) -> str:
    return core


@dataclass(frozen=True)
class PilotRecipe:
    """How the built-in pilot (stages/pilot/__init__.py) writes a miniature of a release.

    `write(folder, rows, counts)` writes the native files from the pilot's examples
    (PilotExample above) and counts rows per original split in `counts` (and image
    files under "images")."""
    split_slots: dict[str, int]           # original split -> slots per block of 20 examples
    abusive_share: float                  # share of abusive examples in each split
    write: Callable[[Path, Iterable[Any], Any], None]
    style: Callable[[str, Any], str] = _as_is   # (core sentence, rng) -> the dataset's text style
    about_women: bool = False             # core sentences from the women vocabulary (MAMI), not the invented groups
    # (text, text class, rng) -> the caption drawn on the image; None: the text itself
    caption: Callable[[str, bool, Any], str | None] | None = None
