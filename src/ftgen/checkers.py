"""Answer checkers for self-generated training targets (S3FT) and scoring: the final number of a
math answer, compared by value.

Tolerant of formatting ("$1,200.00", "1200", "1,200", "−5", "3/4", "75%"), strict about the
value: "12 00" is two numbers (the final one, 00, is 0), "1,20" is not a thousands group. A
percent sign is formatting ("75%" equals "75"), as in math word-problem answers.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = re.compile(
    r"(?<![\w./])"  # not glued to a word, a decimal point or a slash
    r"(?P<sign>[-−–])?\s?\$?\s?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)"  # 1,200 or 1200 (commas only in groups of three)
    r"(?:\.(?P<dec>\d+))?"
    r"(?:\s?/\s?(?P<den>\d+))?"  # a fraction 3/4
    r"(?P<pct>\s?%)?"
    r"(?![\d,]*\d)"
)
_FINAL_MARKERS = re.compile(r"(?:####|answer\s*(?:is|:))", re.I)


def parse_number(match: re.Match) -> Fraction:
    value = Fraction(int(match["int"].replace(",", "")))
    if match["dec"]:
        value += Fraction(int(match["dec"]), 10 ** len(match["dec"]))
    if match["den"]:
        den = int(match["den"])
        if den == 0:
            raise ValueError("division by zero")
        value /= den
    return -value if match["sign"] else value


def final_number(text: str) -> Fraction | None:
    """The answer's final number: the first number after the last "####" / "answer is" marker,
    else the last number in the text; None when there is none."""
    if not text:
        return None
    markers = list(_FINAL_MARKERS.finditer(text))
    tail = text[markers[-1].end():] if markers else text
    numbers = list(_NUMBER.finditer(tail))
    if not numbers:
        return None
    try:
        return parse_number(numbers[0] if markers else numbers[-1])
    except ValueError:
        return None


def same_number(prediction: str, gold: str) -> bool:
    """True when both final numbers exist and are equal as exact fractions."""
    p, g = final_number(prediction), final_number(gold)
    return p is not None and g is not None and p == g
