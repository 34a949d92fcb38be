"""The math final-answer checker on tricky strings: tolerant of format, strict about value, and
reading the number the answer commits to (not the first number after a marker, not a marker
with no number)."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftgen.checkers import final_number, same_number


@pytest.mark.parametrize(
    "text,value",
    [
        ("$1,200.00", Fraction(1200)),
        ("1200", Fraction(1200)),
        ("1,200", Fraction(1200)),
        ("12 00", Fraction(0)),  # two numbers: the final one is 00
        ("-5", Fraction(-5)),
        ("−5", Fraction(-5)),
        ("The change is -3.5 degrees", Fraction(-7, 2)),
        ("3/4", Fraction(3, 4)),
        ("0.75", Fraction(3, 4)),
        ("75%", Fraction(75)),
        ("She has 3 apples and buys 4 more, so 7 in total.", Fraction(7)),
        ("#### 72", Fraction(72)),
        ("The answer is 18. Check: 9 + 9 = 18", Fraction(18)),
        ("Step 1: 5 * 3 = 15\nFinal answer: 15 dollars, 2 left", Fraction(15)),
        ("1,20", Fraction(20)),  # not a thousands group: 1 and 20
        ("no number here", None),
        ("", None),
        ("x/0", None),
        ("5/0", None),
    ],
)
def test_final_number(text, value):
    assert final_number(text) == value


@pytest.mark.parametrize(
    "pred,gold,same",
    [
        ("$1,200.00", "1200", True),
        ("The total is 1,200.", "1200", True),
        ("12 00", "1200", False),
        ("-4", "4", False),
        ("4", "4.0", True),
        ("1/2", "0.5", True),
        ("0.333", "1/3", False),
        ("I don't know", "3", False),
        ("#### 10\nso 11 in all?", "10", True),
    ],
)
def test_same_number(pred, gold, same):
    assert same_number(pred, gold) is same


# ----------------------------------------------------------------------------- the number the answer commits to
GSM8K_SOLUTION = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


@pytest.mark.parametrize(
    "text,value",
    [
        # the last "answer is" has no number: the one before it counts
        ("The answer is 42. I hope this answer is helpful.", Fraction(42)),
        # an equation chain after the marker: its result, not its first operand
        ("The answer is 20 - 5 = 15.", Fraction(15)),
        ("The answer is 2 * 3 + 4 = 10 apples, 3 more than Tom.", Fraction(10)),
        ("First 3 * 4 = 12, then 12 + 5 = 17.\n#### 17\nI hope this answer is helpful.", Fraction(17)),
        ("5 + 3 = 8 apples, and 2 bananas", Fraction(8)),  # the last sentence's equation result
        ("\\boxed{\\frac{3}{4}}", Fraction(3, 4)),
        ("-\\dfrac{3}{4}", Fraction(-3, 4)),
        ("The answer is $\\boxed{1{,}200}$.", Fraction(1200)),
        ("First 2 + 2 = 4, so \\boxed{x = 5}. Check: 5 - 1 = 4", Fraction(5)),
        ("The answer is 1.2e3.", Fraction(1200)),
        ("The answer is .5", Fraction(1, 2)),
        ("She has 10 - 5", Fraction(5)),  # a spaced minus is an operator
    ],
)
def test_final_number_commits_to_the_answer(text, value):
    """Strings the old reader (first number after the last marker, else the last number) got wrong."""
    assert final_number(text) == value


@pytest.mark.parametrize(
    "text,value",
    [
        (GSM8K_SOLUTION, Fraction(72)),
        ("So she has 5 + 3 = 8 apples.", Fraction(8)),
        ("The answer is: $18.", Fraction(18)),
        ("x = 3, so the answer is 3 apples", Fraction(3)),
        ("\\boxed{15 \\text{ cm}}", Fraction(15)),
        ("Answer: -7", Fraction(-7)),
        ("Total: 1,234,567", Fraction(1234567)),
        ("12.50 dollars", Fraction(25, 2)),
        ("answer is 0.5 (half)", Fraction(1, 2)),
        ("the result is 3.00", Fraction(3)),
        ("Final Answer: The final answer is $18$. I hope it is correct.", Fraction(18)),
        ("**Answer:** 42", Fraction(42)),
        ("The answer is:\n\n42", Fraction(42)),
        ("The answer is 15, since 20 - 5 = 15 and 2 + 2 = 4", Fraction(15)),  # the clause ends at ", "
        ("The answer is 4, since x = 4 satisfies 2x = 8", Fraction(4)),
        ("20-5 is what is left", Fraction(5)),  # no negative number glued to a digit
        ("1 200", Fraction(200)),  # a space never groups digits
        ("The answer is 3/4 of a cup.", Fraction(3, 4)),
        ("So 25% of them, 75% are left", Fraction(75)),
    ],
)
def test_final_number_tricky_kept(text, value):
    """Tricky strings the old reader already got right, and the new one must too."""
    assert final_number(text) == value


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("The answer is 42. I hope this answer is helpful.", "#### 42"),
        ("The answer is 20 - 5 = 15.", "#### 15"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
    ],
)
def test_same_number_on_committed_answers(pred, gold):
    assert same_number(pred, gold)


# ----------------------------------------------------------------------------- properties
def spellings(d: Decimal) -> list[str]:
    """Common ways to write a non-negative number with at most two decimals."""
    plain = format(d, "f")
    out = [
        plain,
        format(d, ",f"),
        "$" + format(d, ",.2f"),
        format(d, ".2f"),
        plain + ("0" if "." in plain else ".0"),
        plain + " dollars",
        plain + " cm",
        plain + "%",
    ]
    _, digits, exp = d.normalize().as_tuple()
    if d != 0:  # exact scientific notation: 1.2e3, 5e-1
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        out += [f"{mantissa}e{exp + len(digits) - 1}", f"{mantissa}E{exp + len(digits) - 1:+d}"]
    return out


WRAPPERS = [
    "{}",
    "The answer is {}.",
    "#### {}",
    "\\boxed{{{}}}",
    "Answer: {}",
    "She bought 3 + 4 = 7 pens and 12 pencils. The answer is {}. I hope this answer is helpful.",
    "First 17 * 2 = 34, then 34 + 8 = 42 pens.\n#### {}",
    "So the total is 2 * 3 + 1 = {}.",
    "We need 12 boxes.\nThe final answer is $\\boxed{{{}}}$",
]


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.integers(0, 10**12).map(Decimal),
        st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    ),
    st.sampled_from(WRAPPERS),
    st.data(),
)
def test_any_spelling_of_a_number_checks_equal(d, wrapper, data):
    spelled = data.draw(st.sampled_from(spellings(d)))
    text = wrapper.format(spelled)
    assert final_number(text) == Fraction(d), text
    assert same_number(text, format(d, "f")) and same_number(text, f"#### {format(d, 'f')}")


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**9), -1), st.sampled_from(["-", "−"]), st.sampled_from(WRAPPERS))
def test_negative_numbers_check_equal(n, minus, wrapper):
    text = wrapper.format(f"{minus}{abs(n):,}")
    assert final_number(text) == n, text
    assert same_number(text, str(n)) and not same_number(text, str(-n))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 999),
    st.integers(1, 999),
    st.sampled_from(["{}/{}", "\\frac{{{}}}{{{}}}", "\\dfrac{{{}}}{{{}}}"]),
    st.sampled_from(WRAPPERS),
)
def test_fractions_check_equal(p, q, form, wrapper):
    text = wrapper.format(form.format(p, q))
    assert final_number(text) == Fraction(p, q), text
