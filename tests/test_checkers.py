"""The math final-answer checker on tricky strings: tolerant of format, strict about value."""

from fractions import Fraction

import pytest

from ftgen.checkers import final_number, same_number


@pytest.mark.parametrize("text,value", [
    ("$1,200.00", Fraction(1200)), ("1200", Fraction(1200)), ("1,200", Fraction(1200)),
    ("12 00", Fraction(0)),  # two numbers: the final one is 00
    ("-5", Fraction(-5)), ("−5", Fraction(-5)), ("The change is -3.5 degrees", Fraction(-7, 2)),
    ("3/4", Fraction(3, 4)), ("0.75", Fraction(3, 4)), ("75%", Fraction(75)),
    ("She has 3 apples and buys 4 more, so 7 in total.", Fraction(7)),
    ("#### 72", Fraction(72)), ("The answer is 18. Check: 9 + 9 = 18", Fraction(18)),
    ("Step 1: 5 * 3 = 15\nFinal answer: 15 dollars, 2 left", Fraction(15)),
    ("1,20", Fraction(20)),  # not a thousands group: 1 and 20
    ("no number here", None), ("", None), ("x/0", None), ("5/0", None),
])
def test_final_number(text, value):
    assert final_number(text) == value


@pytest.mark.parametrize("pred,gold,same", [
    ("$1,200.00", "1200", True), ("The total is 1,200.", "1200", True), ("12 00", "1200", False),
    ("-4", "4", False), ("4", "4.0", True), ("1/2", "0.5", True), ("0.333", "1/3", False),
    ("I don't know", "3", False), ("#### 10\nso 11 in all?", "10", True),
])
def test_same_number(pred, gold, same):
    assert same_number(pred, gold) is same
