import json
import unicodedata

from stages.records import OcrLine
from stages.text import combine_text, comparison_key, has_content, normalize_lang, normalize_text


def test_full_pattern_with_low_confidence_lines_dropped():
    lines = (OcrLine("WHEN YOU", 0.9), OcrLine("x#@!", 0.2), OcrLine("finally  get it", None))
    out = combine_text(lines, "my caption\n", "en", ocr_min_conf=0.5)
    assert out.text == "[OCR] WHEN YOU finally get it [/OCR] [CAP] my caption [/CAP] <lang=en>"
    assert out.ocr_lines_dropped == 1 and not out.ocr_repeats_caption


def test_threshold_is_inclusive_and_none_confidence_is_kept():
    lines = (OcrLine("exact", 0.5), OcrLine("transcription", None), OcrLine("low", 0.4999))
    assert combine_text(lines, None, "en", 0.5).text == "[OCR] exact transcription [/OCR] <lang=en>"


def test_ocr_repeating_the_caption_is_left_out():
    lines = (OcrLine("Look at THIS,", 0.9), OcrLine("dog!!", 0.8))
    out = combine_text(lines, "look at this dog", "en", 0.5)
    assert out.text == "[CAP] look at this dog [/CAP] <lang=en>"
    assert out.ocr_repeats_caption
    # different words are kept; punctuation-only OCR is not a "repeat" of a punctuation caption
    different = combine_text((OcrLine("look at this cat"),), "look at this dog", "en", 0.5)
    assert "[OCR] look at this cat [/OCR]" in different.text
    assert combine_text((OcrLine("???"),), "!!!", "en", 0.5).text == "[OCR] ??? [/OCR] [CAP] !!! [/CAP] <lang=en>"


def test_empty_parts_are_omitted():
    assert combine_text((), None, "en", 0.5).text == "<lang=en>"
    assert combine_text((OcrLine("   "), OcrLine("\t", 0.9)), "  \n ", "de", 0.5).text == "<lang=de>"
    assert combine_text((), "hi", "en", 0.5).text == "[CAP] hi [/CAP] <lang=en>"
    assert not has_content("<lang=en>") and has_content("[CAP] hi [/CAP] <lang=en>")


def test_normalisation_controls_whitespace_nfc():
    decomposed = "cafe\u0301"  # e + combining acute
    text = normalize_text(f"  a\x00b\x07c\u2028{decomposed}\r\n\tend\x1b ")
    assert text == "a b c caf\u00e9 end"
    assert unicodedata.is_normalized("NFC", text)


def test_emoji_and_right_to_left_text_survive():
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # ZWJ sequence: the joiners must stay
    arabic = "\u0645\u0631\u062d\u0628\u0627 \u200f\u0628\u0643"  # with a right-to-left mark
    out = combine_text((OcrLine(arabic, 0.9),), f"so true {family} 😂", "ar", 0.5).text
    assert out == f"[OCR] {arabic} [/OCR] [CAP] so true {family} 😂 [/CAP] <lang=ar>"


def test_invalid_unicode_becomes_replacement_characters_and_encodes():
    # A JSON manifest can carry lone surrogates (undecodable bytes); the text must still be UTF-8.
    caption = json.loads('"bad \\udcff byte and \\ud83d\\ude00 pair"')
    out = combine_text((), caption, "en", 0.5).text
    assert out == "[CAP] bad \ufffd byte and \U0001F600 pair [/CAP] <lang=en>"
    out.encode("utf-8")


def test_language_tag_is_sanitised_with_fallback():
    assert normalize_lang("pt-BR", "en") == "pt-BR"
    assert normalize_lang(None, "en") == "en"
    assert normalize_lang(" <x> ", "en") == "x"
    assert normalize_lang("", "en") == "en"
    assert normalize_lang(">>", "") == "und"


def test_comparison_key_is_case_and_punctuation_blind():
    assert comparison_key("Hello,  WORLD!") == comparison_key("hello world") == "hello world"
    assert comparison_key("...") == ""


def test_comparison_key_with_compatibility_folds_forms_and_underscores():
    """split's duplicate-text key: fullwidth letters, ligatures and `_` do not make a text different."""
    assert comparison_key("ＨＥＬＬＯ_ﬁne", compatibility=True) == comparison_key("hello fine") == "hello fine"
    assert comparison_key("ＨＥＬＬＯ_fine") == "ｈｅｌｌｏ_fine"   # without it: still fullwidth, `_` a word character
