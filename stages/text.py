"""The combined text field of a packed example.

    [OCR] <kept OCR lines> [/OCR] [CAP] <text_raw> [/CAP] <lang=xx>

OCR lines below a confidence threshold are dropped (conf None = a dataset transcription, kept);
every part is normalised (valid Unicode, NFC, no control characters, single spaces) and cut to
`max_chars` characters (pack.max_text_chars); the OCR part is left out when it only repeats the
caption; empty parts are omitted.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from stages.records import OcrLine

_NOT_WORD = re.compile(r"\W+")
_LANG_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class CombinedText:
    text: str
    ocr_lines_dropped: int = 0          # below the confidence threshold
    ocr_repeats_caption: bool = False   # OCR part left out because it equals the caption
    truncated: bool = False             # the OCR part or the caption was cut to max_chars


def repair_unicode(text: str) -> str:
    """Make `text` encodable as UTF-8: surrogate pairs are joined, lone surrogates (how JSON and
    Python's surrogateescape carry undecodable bytes) become U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def normalize_text(text: str | None) -> str:
    """Valid Unicode, NFC, control characters removed, whitespace runs -> one space, stripped.

    Format characters (category Cf: zero-width joiners in emoji, right-to-left marks) are kept:
    they carry meaning in emoji sequences and bidirectional text.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFC", repair_unicode(text))
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return " ".join(text.split())


def comparison_key(text: str, compatibility: bool = False) -> str:
    """Case- and punctuation-blind form of `text`: casefolded, every run of non-word characters
    collapsed to one space. Tells whether OCR only repeats the caption.

    `compatibility` also folds compatibility forms first (NFKC: fullwidth letters, ligatures) and
    counts `_` as punctuation: split's duplicate-text key, where any two renderings of the same
    words are the same text.
    """
    if compatibility:
        text = unicodedata.normalize("NFKC", text).replace("_", " ")
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


def normalize_lang(lang: str | None, default: str) -> str:
    """A language tag safe inside `<lang=...>`; falls back to `default` when empty."""
    cleaned = _LANG_CHARS.sub("", lang or "")
    return cleaned or _LANG_CHARS.sub("", default) or "und"


def kept_ocr_lines(lines: Sequence[OcrLine], min_conf: float) -> list[str]:
    return [normalize_text(line.text) for line in lines if line.conf is None or line.conf >= min_conf]


def combine_text(ocr_lines: Sequence[OcrLine], caption: str | None, lang: str,
                 ocr_min_conf: float, max_chars: int | None = None) -> CombinedText:
    """`lang` is the tag as written (see normalize_lang)."""
    kept = [line for line in kept_ocr_lines(ocr_lines, ocr_min_conf) if line]
    dropped = sum(1 for line in ocr_lines if line.conf is not None and line.conf < ocr_min_conf)
    full_ocr, full_cap = " ".join(kept), normalize_text(caption)
    ocr, cap = (full_ocr[:max_chars].rstrip(), full_cap[:max_chars].rstrip()) if max_chars else (full_ocr, full_cap)
    ocr_key = comparison_key(ocr)
    repeats = bool(ocr_key) and ocr_key == comparison_key(cap)
    parts = []
    if ocr and not repeats:
        parts.append(f"[OCR] {ocr} [/OCR]")
    if cap:
        parts.append(f"[CAP] {cap} [/CAP]")
    parts.append(f"<lang={lang}>")
    return CombinedText(text=" ".join(parts), ocr_lines_dropped=dropped, ocr_repeats_caption=repeats,
                        truncated=(ocr, cap) != (full_ocr, full_cap))


def has_content(text: str) -> bool:
    """False when a combined text is only the language tag (no OCR, no caption)."""
    return not text.startswith("<lang=")
