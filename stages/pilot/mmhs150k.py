"""The pilot's miniature of mmhs150k in its native layout (the real release is read by
stages/releases/mmhs150k.py)."""
from __future__ import annotations

import contextlib
import json
import random
import string
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import (
    BLOCK,
    EMOJI,
    HASHTAGS,
    JsonObjectFile,
    PilotExample,
    PilotRecipe,
    core_text,
    maybe_append,
    open_new,
    open_text,
    random_code,
    save_image,
)
from stages.releases.mmhs150k import LABELS_STR, SPLITS


def pilot_votes(ex: PilotExample) -> list[int]:
    """3 workers: the majority agrees with the class; the third worker sometimes disagrees."""
    rng = ex.rng("labels")
    kind = rng.choices(range(1, 6), weights=(5, 2, 2, 1, 2))[0]
    majority = kind if ex.abusive else 0
    minority = rng.choice((0, 1, 2, 3, 4, 5, kind))
    votes = [majority, majority, minority if rng.random() < 0.35 else majority]
    rng.shuffle(votes)
    return votes


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
    """MMHS150K_GT.json (one line, tweet id -> tweet), splits/*_ids.txt, img_txt/<id>.json (only
    for images with text), img_resized/<id>.jpg (a few are GIF content under the .jpg name)."""
    with contextlib.ExitStack() as stack:
        gt = JsonObjectFile(open_text(stack, folder / "MMHS150K_GT.json"))
        split_files = {s: open_text(stack, folder / "splits" / f"{s}_ids.txt") for s in SPLITS}
        for ex in rows:
            rng = ex.rng("ids")
            tweet_id = str(1_023_000_000_000_000_000 + ex.index * 10**14 + rng.randrange(10**14))
            votes = pilot_votes(ex)
            gt.write(tweet_id, {"tweet_text": ex.text, "labels": votes, "labels_str": [LABELS_STR[v] for v in votes],
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


def style_pilot(core: str, rng: random.Random) -> str:
    text = core.capitalize()
    if rng.random() < 0.5:
        text = f"@{random_code(rng, rng.randint(5, 12), string.ascii_lowercase + '_0123456789')} {text}"
    text = maybe_append(maybe_append(text, rng, 0.3, HASHTAGS), rng, 0.1, EMOJI)
    return f"{text} https://t.co/{random_code(rng, 10)}"


def pilot_caption(text: str, text_class: bool, rng: random.Random) -> str | None:
    """The tweet is not on the image; ~1 in 4 images has no text at all."""
    return None if rng.random() < 0.25 else core_text(text_class, False, rng).upper()


RECIPE = PilotRecipe(split_slots={"train": 15, "val": 2, "test": 3}, abusive_share=0.35, write=write_pilot,
                     style=style_pilot, caption=pilot_caption)
