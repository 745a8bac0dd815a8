"""The pilot's miniature of memotion1 in its native layout (the real release is read by
stages/releases/memotion1.py)."""
from __future__ import annotations

import contextlib
import random
import string
from collections import Counter
from pathlib import Path
from typing import Iterable

from stages.pilot.kit import PilotExample, PilotRecipe, csv_writer, ocr_noise, pick, random_code, save_image
from stages.releases.memotion1 import HUMOUR, MOTIVATIONAL, OFFENSIVE, SARCASM, SENTIMENT


def pilot_labels(ex: PilotExample, sarcasm_values: tuple[str, ...]) -> list[str]:
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


def pilot_gold_code(labels: list[str]) -> str:
    """Meme_groundTruth.csv's Labels: <sentiment -1|0|1>_<4 binary>_<4 intensities>."""
    humour, sarcasm, offensive, motivational, sentiment = labels
    grades = [HUMOUR.index(humour), SARCASM.index(sarcasm), OFFENSIVE.index(offensive),
              MOTIVATIONAL.index(motivational)]
    polarity = {"very_negative": -1, "negative": -1, "neutral": 0, "positive": 1, "very_positive": 1}[sentiment]
    return f"{polarity}_{''.join('1' if g else '0' for g in grades)}_{''.join(map(str, grades))}"


PILOT_EXTENSIONS = {"jpg": 0.7, "png": 0.17, "jpeg": 0.07, "JPG": 0.03, "PNG": 0.03}
PILOT_TOPICS = ("10_year", "cat", "coffee", "dog", "friends", "minions", "office", "school", "weekend")


def pilot_extension(ex: PilotExample) -> str:
    """Mixed extensions (all five appear even in a small pilot); the content matches the name."""
    first = list(PILOT_EXTENSIONS)
    return first[ex.index] if ex.index < len(first) else pick(ex.rng("extension"), PILOT_EXTENSIONS)


def write_pilot(folder: Path, rows: Iterable[PilotExample], counts: Counter) -> None:
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
            ext = pilot_extension(ex)
            labels = pilot_labels(ex, SARCASM)
            text_ocr = ocr_noise(ex.text, rng)
            corrected = "" if rng.random() < 0.04 else ex.text  # a few rows only have the OCR text
            if ex.split == "train":
                name = f"image_{counts['train'] + 1}.{ext}"
                train.writerow([counts["train"], name, text_ocr, corrected, *labels])
                image_path = train_dir / "images" / name
            else:
                code = random_code(rng, 6, string.ascii_lowercase + string.digits)
                name = f"{rng.choice(PILOT_TOPICS)}_{code}.{ext}"
                test.writerow([name, f"https://i.imgflip.com/{code}.{ext.lower()}", text_ocr, corrected])
                gold.writerow([name, pilot_gold_code(labels)])
                image_path = test_dir / "2000_data" / name
            save_image(ex.image, image_path, "png" if ext.lower() == "png" else "jpeg")
            counts["images"] += 1
            counts[ex.split] += 1


def style_pilot(core: str, rng: random.Random) -> str:
    """Memotion captions: often upper case, some in two parts on two lines (quoted newlines)."""
    text = core.upper() if rng.random() < 0.4 else core.capitalize()
    words = text.split(" ")
    if rng.random() < 0.15 and len(words) > 3:
        cut = len(words) // 2
        text = " ".join(words[:cut]) + "\n" + " ".join(words[cut:])
    return text


RECIPE = PilotRecipe(split_slots={"train": 16, "test": 4}, abusive_share=0.35, write=write_pilot, style=style_pilot)
