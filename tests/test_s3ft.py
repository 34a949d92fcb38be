"""The S3FT target builder's three branches on a scripted model and judge."""

import pytest

from ftgen.checkers import same_number
from ftgen.s3ft import select_targets

EXAMPLES = [{"id": f"q{i}", "inputs": {"question": f"{i} + {i}?"}, "references": [f"#### {2 * i}"]} for i in range(6)]


def scripted_model():
    """q0, q1: right own answers; q2, q3: wrong, but the paraphrase is right; q4, q5: both wrong."""
    own = {
        "q0": "0 + 0 = 0. The answer is 0",
        "q1": "1 and 1 make 2",
        "q2": "It is 5",
        "q3": "7",
        "q4": "I think 9",
        "q5": "",
    }
    asked = []

    def paraphrase(batch):
        asked.extend(ex["id"] for ex in batch)
        rewrites = {
            "q2": "Adding 2 to 2 gives 4.",
            "q3": "Three plus three is 6",
            "q4": "It should be 10",
            "q5": "no idea",
        }
        return [rewrites[ex["id"]] for ex in batch]

    return own, paraphrase, asked


def judge(candidate, example):
    return same_number(candidate, example["references"][0])


def test_three_branches_and_counts():
    own, paraphrase, asked = scripted_model()
    rows, card = select_targets(EXAMPLES, own, judge, paraphrase)
    assert [r["provenance"] for r in rows] == ["self", "self", "paraphrase", "paraphrase", "gold", "gold"]
    assert rows[0]["target"] == own["q0"] and rows[2]["target"] == "Adding 2 to 2 gives 4."
    assert rows[4]["target"] == "#### 8" and rows[5]["target"] == "#### 10"
    assert asked == ["q2", "q3", "q4", "q5"]  # the paraphraser only sees rejected examples, once
    assert card == {
        "examples": 6,
        "self": 2,
        "paraphrase": 2,
        "gold": 2,
        "fractions": {"self": 2 / 6, "paraphrase": 2 / 6, "gold": 2 / 6},
    }


def test_same_examples_as_sft_in_the_same_order():
    own, paraphrase, _ = scripted_model()
    rows, _ = select_targets(EXAMPLES, own, judge, paraphrase)
    assert [r["id"] for r in rows] == [ex["id"] for ex in EXAMPLES]
    assert all(r["inputs"] == ex["inputs"] and r["references"] == ex["references"] for r, ex in zip(rows, EXAMPLES))


def test_missing_base_answers_are_an_error():
    own, paraphrase, _ = scripted_model()
    del own["q3"]
    with pytest.raises(ValueError, match="no base-model answer for 1"):
        select_targets(EXAMPLES, own, judge, paraphrase)
