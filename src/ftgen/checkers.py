"""Answer checkers for self-generated training targets (S3FT) and scoring: the final number of a
math answer, compared by value.

The number an answer commits to (`final_number`), in priority order:
1. GSM8K's "#### X": the first number after the last "####" that has one;
2. the last "\\boxed{X}" (or "\\fbox{X}") with a number in it;
3. the last "answer is X" / "answer: X" / "answer = X" marker that has a number in its clause (the
   text up to the end of the sentence, line, or a ", " / "because" / "since" break): markers with
   no number after them ("I hope this answer is helpful.") are skipped;
4. otherwise the last sentence (or line) with a number in it.
Inside the chosen box, clause or sentence, an equation chain gives its result: the first number
after the last "=" ("The answer is 20 - 5 = 15." is 15, "So she has 5 + 3 = 8 apples." is 8);
without "=", a box or clause gives its first number ("answer is 0.5 (half)"), a sentence its last.

Numbers are tolerant of formatting, strict about the value: "$1,200.00", "1200", "1,200", "1200.0",
"1.2e3", ".5", "−5" / "-5" (a minus attached to the digits; "20-5" and "x - 5" are no negative
numbers), "3/4", "\\frac{3}{4}", "75%" (a percent sign is formatting, "75%" equals "75", as in math
word-problem answers); units and currency words ("15 dollars", "15 cm") are ignored. Digits are
grouped only by commas in groups of three: "1,20" is 1 and 20, and a space never groups digits,
"1 200" and "12 00" are two numbers (the final one, 200 / 00, is taken) since a space also
separates list items. Mixed numbers ("1 1/2") are not read as one value. A fraction over zero is
no number (None).
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = re.compile(
    r"(?<![\w./])"  # not glued to a word, a decimal point or a slash
    r"(?:\$\s?)?(?P<sign>[-−–])?(?:\$\s?)?"  # a minus attached to the number: -5, −5, -$5, $-5
    r"(?:(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<dec>\d+))?|\.(?P<frac>\d+))"  # 1,200 / 1200 / 1200.5 / .5
    r"(?:[eE](?P<exp>[-+]?\d+))?"  # 1.2e3
    r"(?:\s?/\s?(?P<den>\d+))?"  # a fraction 3/4
    r"(?P<pct>\s?%)?"
    r"(?![\d,]*\d)"
)
_GSM8K = re.compile(r"####")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER = re.compile(r"\banswer\b\s*(?:is|was|would\s+be|will\s+be|should\s+be|:|=)\s*:?", re.I)
# the end of a committed clause: a sentence end, a line end, ", " or a "because"-like conjunction
_CLAUSE_END = re.compile(r"[.!?;](?=\s|$)|\n|,\s|\s(?:because|since|as|which|but|so|and then)\b", re.I)
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")


def _simplify_latex(text: str) -> str:
    """LaTeX and GSM8K calculator markup that only formats a number, as plain text."""
    text = re.sub(r"<<[^<>]*>>", " ", text)  # GSM8K calculator annotations <<48/2=24>>
    text = re.sub(r"\\[!,;:]|\\left|\\right", "", text)
    text = text.replace("{,}", ",").replace("\\%", "%").replace("\\$", "$")
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}", r" \1", text)
    text = re.sub(r"\^\s*\{?\\circ\}?", "", text)
    text = re.sub(r"\\(?:times|cdot)", "*", text)
    text = re.sub(r"\\div", "/", text)
    simple = re.compile(r"\s*[-−]?\s*\d+(?:\.\d+)?\s*")

    def frac(m: re.Match) -> str:
        num, den = m["num"], m["den"]
        if simple.fullmatch(num) and simple.fullmatch(den):
            return f"{num.strip()}/{den.strip()}"
        return f"({num})/({den})"

    for _ in range(3):  # nested fractions, innermost first
        text = re.sub(r"\\[dt]?frac\s*\{(?P<num>[^{}]*)\}\s*\{(?P<den>[^{}]*)\}", frac, text)
    return re.sub(r"\\[dt]?frac\s*(?P<num>\d)(?P<den>\d)", r"\g<num>/\g<den>", text)


def parse_number(match: re.Match) -> Fraction:
    """The value of a `_NUMBER` match; ValueError for a fraction over zero."""
    if match["int"] is not None:
        value = Fraction(int(match["int"].replace(",", "")))
        if match["dec"]:
            value += Fraction(int(match["dec"]), 10 ** len(match["dec"]))
    else:
        value = Fraction(int(match["frac"]), 10 ** len(match["frac"]))
    if match["exp"]:
        value *= Fraction(10) ** int(match["exp"])
    if match["den"]:
        den = int(match["den"])
        if den == 0:
            raise ValueError("division by zero")
        value /= den
    return -value if match["sign"] else value


def _result(span: str, last: bool = False) -> re.Match | None:
    """The number a span commits to: the first after its last "=" (an equation chain's result),
    else its first number (its last with `last`); None when it has none."""
    numbers = list(_NUMBER.finditer(span))
    if not numbers:
        return None
    eq = span.rfind("=")
    after = [n for n in numbers if n.start() > eq] if eq >= 0 else []
    if after:
        return after[0]
    return numbers[-1] if last else numbers[0]


def _boxed(text: str) -> list[str]:
    """The contents of every \\boxed{...}, braces balanced."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def _clause(text: str, start: int) -> str:
    """The text from `start` (leading space and markdown skipped) to the end of its clause."""
    rest = text[start:]
    rest = rest[len(rest) - len(rest.lstrip(" \t\n*:_")) :]
    end = _CLAUSE_END.search(rest)
    return rest[: end.start()] if end else rest


def _committed(text: str) -> re.Match | None:
    for marker in reversed(list(_GSM8K.finditer(text))):
        numbers = list(_NUMBER.finditer(text, marker.end()))
        if numbers:
            return numbers[0]
    for box in reversed(_boxed(text)):
        number = _result(box)
        if number:
            return number
    for marker in reversed(list(_ANSWER.finditer(text))):
        number = _result(_clause(text, marker.end()))
        if number:
            return number
    sentences = [s for s in _SENTENCE_END.split(text) if _NUMBER.search(s)]
    return _result(sentences[-1], last=True) if sentences else None


def final_number(text: str) -> Fraction | None:
    """The number the answer commits to (rules in the module docstring), as an exact fraction;
    None when there is none."""
    if not text:
        return None
    number = _committed(_simplify_latex(text))
    if number is None:
        return None
    try:
        return parse_number(number)
    except ValueError:
        return None


def same_number(prediction: str, gold: str) -> bool:
    """True when both final numbers exist and are equal as exact fractions."""
    p, g = final_number(prediction), final_number(gold)
    return p is not None and g is not None and p == g
