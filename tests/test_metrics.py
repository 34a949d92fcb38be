"""Every metric of ftgen.metrics against its reference implementation on the same predictions:
the official SQuAD v2.0 evaluation script (EM / token F1), rouge-score (ROUGE-L / ROUGE-Lsum with
the task's settings), sacrebleu (corpus BLEU from sufficient statistics, bootstrap subsets) and
scikit-learn (accuracy, macro-F1); known values; and the S3FT tasks' metrics on real HumanEval,
MathQA and MBPP rows (unit tests run in the sandbox, final numbers compared by value).

Self-contained (no conftest fixtures; ftgen modules other than ftgen.metrics are imported inside
the tests), so it can also be run against another checkout of the package:
`PYTHONPATH=<old>/src python -m pytest --noconftest tests/test_metrics.py`
(the conftest puts this checkout's src/ first on sys.path)."""

from __future__ import annotations

import collections
import re
import string
import warnings
from itertools import product

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftgen import metrics
from ftgen.metrics import (
    bleu_corpus,
    bleu_from_stats,
    bleu_stats,
    exact_match,
    macro_f1,
    program_of,
    rouge_l,
    score,
    token_f1,
)
from helpers import REPO, fetch_or_skip


# ----------------------------------------------------------------------------- SQuAD reference
# Verbatim from the official SQuAD v2.0 evaluation script, "evaluate-v2.0.py"
# (https://worksheets.codalab.org/rest/bundles/0x6b567e1cf2e041ec80d7098f031c5c9e/contents/blob/,
# Rajpurkar et al. 2018): normalize_answer, get_tokens, compute_exact, compute_f1, and the gold
# answer handling + max over gold answers of get_raw_scores (as `squad_v2_scores`).
def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        regex = re.compile(r"\b(a|an|the)\b", re.UNICODE)
        return re.sub(regex, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def squad_v2_scores(a_pred, answers):
    """get_raw_scores' body for one question (`answers` = the gold answer texts)."""
    gold_answers = [a for a in answers if normalize_answer(a)]
    if not gold_answers:
        # For unanswerable questions, only correct answer is empty string
        gold_answers = [""]
    # Take max over all gold answers
    return (max(compute_exact(a, a_pred) for a in gold_answers), max(compute_f1(a, a_pred) for a in gold_answers))


# The official SQuAD v1.1 script ("evaluate-v1.1.py", same source): f1_score, for contrast only.
def f1_score_v11(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


SQUAD_CASES = [  # (prediction, references)
    ("The Eiffel Tower", ["eiffel tower"]),  # article + case
    ("an apple a day", ["Apple day"]),  # articles anywhere
    ("Paris!", ["paris"]),  # punctuation
    ("  new   york\tcity\n", ["New York City"]),  # white space
    ("\u00a0Paris\u2003", ["Paris"]),  # unicode white space
    ("U.S.A.", ["USA"]),  # punctuation inside a token
    ("1,000", ["1000"]),
    ("don't", ["dont"]),
    ("theatre", ["the atre"]),  # 'the' only as a whole word
    ("Café", ["CAFÉ"]),  # unicode case
    ("naïve café", ["naive cafe"]),  # accents are not folded
    ("\u201cquoted\u201d", ["quoted"]),  # unicode quotes are not ASCII punctuation
    ("Straße", ["STRASSE"]),
    ("ΣΊΣΥΦΟΣ", ["σίσυφος"]),
    ("cat cat cat", ["cat"]),  # repeated tokens: bag counts
    ("cat dog", ["dog cat cat"]),
    ("the cat the cat", ["a cat"]),
    ("blue", ["red", "Blue.", "light blue"]),  # several references: max
    ("light blue sky", ["blue", "light blue"]),
    ("red", ["green", "blue"]),
    ("", [""]),  # empty vs empty
    ("", ["x"]),
    ("x", [""]),
    ("", ["", "x"]),  # empty golds are dropped (v2.0)
    ("x", ["", "x"]),
    ("the the the", ["the"]),  # both normalise to nothing
    ("a", ["an", "the"]),
    ("...", ["!!"]),
    ("Paris", []),  # no gold: only '' is right
    ("", []),
]


@pytest.mark.parametrize("pred,refs", SQUAD_CASES)
def test_em_and_token_f1_match_official_squad_v2_script(pred, refs):
    em, f1 = squad_v2_scores(pred, refs)
    assert exact_match(pred, refs) == em
    assert token_f1(pred, refs) == f1


def test_empty_answers_follow_squad_v2():
    """The bug: token_f1("", [""]) was 0 (v1.1's f1_score); v2.0 gives 1 when both are empty."""
    assert token_f1("", [""]) == 1.0 and exact_match("", [""]) == 1.0
    assert token_f1("The.", ["a"]) == 1.0  # both normalise to no tokens
    assert token_f1("", ["x"]) == 0.0 and token_f1("x", [""]) == 0.0
    assert exact_match("", ["", "Paris"]) == 0.0 and token_f1("", ["", "Paris"]) == 0.0
    assert f1_score_v11("", "") == 0  # what the old code did


def test_v11_and_v20_agree_when_nothing_is_empty():
    for pred, refs in SQUAD_CASES:
        if normalize_answer(pred) and refs and all(normalize_answer(r) for r in refs):
            assert token_f1(pred, refs) == max(f1_score_v11(pred, r) for r in refs)


_TOKENS = ["the", "a", "An", "cat", "Cat.", "dog,", "dogs", "", "!", "café", "x-y", "THE", "\u00a0", "42"]
_texts = st.lists(st.sampled_from(_TOKENS), max_size=6).map(" ".join)


@settings(max_examples=100, deadline=None)
@given(_texts, st.lists(_texts, min_size=1, max_size=3))
def test_em_and_token_f1_property(pred, refs):
    em, f1 = squad_v2_scores(pred, refs)
    assert (exact_match(pred, refs), token_f1(pred, refs)) == (em, f1)


# ----------------------------------------------------------------------------- ROUGE
ROUGE_PREDS = [
    ("the cats are running home", ["The cat runs home."]),  # stemming matters
    ("where is the key kept", ["Where is the key kept?"]),
    ("A storm hit the coast. Thousands lost power.", ["Thousands lost power after a storm.\nThe coast was hit hard."]),
    ("Thousands lost power.\nA storm hit the coast.", ["A storm hit the coast. Thousands lost power on Monday."]),
    ("", ["something"]),
    ("who", ["what is it", "who is it", "who"]),  # several references
    (
        "Prices rose 3%. Markets fell! Why? Nobody knows.",
        ["Markets fell as prices rose.", "Nobody knows why prices rose 3%."],
    ),
]
# rouge_sentences' split, written out by hand: rouge-score's rougeLsum wants one sentence a line
SPLIT = {
    "The cat runs home.": "The cat runs home.",
    "A storm hit the coast. Thousands lost power.": "A storm hit the coast.\nThousands lost power.",
    "A storm hit the coast. Thousands lost power on Monday.": "A storm hit the coast.\nThousands lost power on Monday.",
    "Prices rose 3%. Markets fell! Why? Nobody knows.": "Prices rose 3%.\nMarkets fell!\nWhy?\nNobody knows.",
    "Nobody knows why prices rose 3%.": "Nobody knows why prices rose 3%.",
}
SETTINGS = list(product(["rougeL", "rougeLsum"], [True, False]))


def _reference_rouge(rouge_type, stemmer, pred, refs):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=stemmer)
    if rouge_type == "rougeLsum":
        pred, refs = SPLIT.get(pred, pred), [SPLIT.get(r, r) for r in refs]
    return max(scorer.score(r, pred)[rouge_type].fmeasure for r in refs)


def test_rouge_sentences():
    for text, split in SPLIT.items():
        assert metrics.rouge_sentences(text) == split
    assert metrics.rouge_sentences("One.\nTwo. Three.") == "One.\nTwo. Three."  # newlines: the author's split
    assert metrics.rouge_sentences('He said "Go." Then 2 left. ok, fine') == 'He said "Go."\nThen 2 left. ok, fine'


@pytest.mark.parametrize("rouge_type,stemmer", SETTINGS)
def test_rouge_matches_rouge_score(rouge_type, stemmer):
    opts = {"rouge": {"type": rouge_type, "stemmer": stemmer}}
    preds, refs = [p for p, _ in ROUGE_PREDS], [r for _, r in ROUGE_PREDS]
    want = [_reference_rouge(rouge_type, stemmer, p, r) for p, r in ROUGE_PREDS]
    corpus, per = score(["rougeL"], preds, refs, options=opts)
    assert [row["rougeL"] for row in per] == pytest.approx([100 * w for w in want], abs=1e-12)
    assert corpus["rougeL"] == pytest.approx(100 * sum(want) / len(want), abs=1e-12)
    assert [rouge_l(p, r, rouge_type, stemmer) for p, r in ROUGE_PREDS] == want


def test_rouge_settings_are_not_vacuous():
    """Each setting changes some score on these predictions, so the comparison above tests them."""
    per = {
        s: score(
            ["rougeL"],
            [p for p, _ in ROUGE_PREDS],
            [r for _, r in ROUGE_PREDS],
            options={"rouge": {"type": s[0], "stemmer": s[1]}},
        )[1]
        for s in SETTINGS
    }
    assert len({tuple(row["rougeL"] for row in rows) for rows in per.values()}) == len(SETTINGS)


def test_rouge_default_is_unchanged_rougeL_with_stemming():
    """Without options (every existing study) the scores are what they were: rougeL, stemmed."""
    preds, refs = [p for p, _ in ROUGE_PREDS], [r for _, r in ROUGE_PREDS]
    _, per = score(["rougeL"], preds, refs)
    want = [100 * _reference_rouge("rougeL", True, p, r) for p, r in ROUGE_PREDS]
    assert [row["rougeL"] for row in per] == pytest.approx(want, abs=1e-12)
    assert metrics.PER_EXAMPLE["rougeL"]("the cats are running", ["The cat runs."]) == rouge_l(
        "the cats are running", ["The cat runs."]
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"rouge": {"type": "rouge2"}},
        {"rouge": {"stemmer": "yes"}},
        {"rouge": {"type": "rougeL", "tokenizer": "x"}},
        {"bleu": {"tokenize": "intl"}},
    ],
)
def test_bad_metric_options_are_refused(bad):
    with pytest.raises(ValueError):
        score(["rougeL"], ["a"], [["a"]], options=bad)


# ----------------------------------------------------------------------------- task option + eval params
def _study(tasks: dict | None = None):
    from ftgen.study import Study, load_yaml

    cfg = load_yaml(REPO / "config/studies/smoke.yaml")
    if tasks:
        cfg["tasks"] = tasks
    return Study(cfg, source="t.yaml")


def test_eval_params_carry_rouge_option_only_when_the_task_sets_it():
    base = _study()
    for ds in ("qg_home", "sent_food"):
        assert "metric_options" not in base.eval_params(ds, 0, 0)  # existing studies' params unchanged
    study = _study({"question_generation": {"rouge": {"type": "rougeLsum"}}})
    params = study.eval_params("qg_home", 0, 0)
    assert params["metric_options"] == {"rouge": {"type": "rougeLsum", "stemmer": True}}
    assert "metric_options" not in study.eval_params("sent_food", 0, 0)
    # what evaluate passes on: score(..., options=params["metric_options"])
    p, r = "A storm hit the coast. Thousands lost power.", ["Thousands lost power.\nThe coast was hit."]
    got = score(params["metrics"], [p], [r], options=params["metric_options"])[1][0]["rougeL"]
    assert got == pytest.approx(100 * _reference_rouge("rougeLsum", True, p, r), abs=1e-12)
    assert _study({"question_generation": {"rouge": {"stemmer": False}}}).eval_params("qg_home", 0, 0)[
        "metric_options"
    ] == {"rouge": {"type": "rougeL", "stemmer": False}}


@pytest.mark.parametrize(
    "task",
    [
        {"question_generation": {"rouge": {"type": "rouge2"}}},
        {"question_generation": {"rouge": {"type": "rougeL", "split": "nltk"}}},
        {"question_generation": {"rouge": {}}},
        {"sentiment": {"rouge": {"type": "rougeL"}}},
    ],
)  # sentiment reports no rougeL
def test_task_schema_checks_the_rouge_option(task):
    from ftgen.study import ConfigError

    with pytest.raises(ConfigError, match="rouge|metrics"):
        _study(task)


# ----------------------------------------------------------------------------- BLEU
BLEU_PREDS = [
    "the cat sat on the mat",
    "a quick brown fox jumps",
    "",
    "hello world , how are you ?",
    "It is a guide to action which ensures that the military always obeys the commands of the party.",
    "completely unrelated words here",
    "the cat sat on the mat",
]
BLEU_REFS = [
    ["the cat is on the mat", "there is a cat on the mat"],
    ["the quick brown fox jumps over the lazy dog"],
    ["empty hypothesis"],
    ["hello world, how are you?", "hi world", "hello there , how are you doing ?"],
    [
        "It is a guide to action that ensures that the military will forever heed Party commands.",
        "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
    ],
    ["nothing in common"],
    ["a cat sat on a mat"],
]


def _sacrebleu(preds, refs):
    """sacrebleu.corpus_bleu with a variable number of references: missing slots are None."""
    import sacrebleu

    width = max(len(r) for r in refs)
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(width)]
    return sacrebleu.corpus_bleu(preds, streams).score


def test_corpus_bleu_matches_sacrebleu_with_ragged_references():
    assert bleu_corpus(BLEU_PREDS, BLEU_REFS) == pytest.approx(_sacrebleu(BLEU_PREDS, BLEU_REFS), abs=1e-9)
    single = [r[:1] for r in BLEU_REFS]
    assert bleu_corpus(BLEU_PREDS, single) == pytest.approx(_sacrebleu(BLEU_PREDS, single), abs=1e-9)
    assert score(["bleu"], BLEU_PREDS, BLEU_REFS)[0]["bleu"] == pytest.approx(
        _sacrebleu(BLEU_PREDS, BLEU_REFS), abs=1e-9
    )


@pytest.mark.parametrize("idx", [[0, 0, 1, 3, 3, 3, 4], [4, 4, 4], [2, 5, 6, 6, 0], [6, 5, 4, 3, 2, 1, 0, 1]])
def test_bootstrap_bleu_subsets_match_sacrebleu(idx):
    import numpy as np

    stats = bleu_stats(BLEU_PREDS, BLEU_REFS)
    got = bleu_from_stats(stats[np.array(idx)])
    assert got == pytest.approx(_sacrebleu([BLEU_PREDS[i] for i in idx], [BLEU_REFS[i] for i in idx]), abs=1e-9)


def test_sentence_bleu_matches_sacrebleu():
    import sacrebleu

    for p, r in zip(BLEU_PREDS, BLEU_REFS):
        assert score(["bleu"], [p], [r])[1][0]["bleu"] == sacrebleu.sentence_bleu(p, r).score


# ----------------------------------------------------------------------------- accuracy, macro-F1
def _sk_macro_f1(golds, preds, labels):
    from sklearn.metrics import f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f1_score(golds, preds, labels=labels, average="macro", zero_division=0)


MACRO_CASES = [  # (predictions, golds, labels)
    (["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"]),
    (["pos", "pos", "pos"], ["pos", "neg", "neg"], ["neg", "pos"]),  # a label never predicted
    (
        ["entailment", "maybe", "I think neutral", "contradiction"],  # predictions outside the labels
        ["entailment", "neutral", "neutral", "entailment"],
        ["entailment", "neutral", "contradiction"],
    ),
    (["yes", "yes"], ["yes", "yes"], ["no", "yes"]),  # 'no': tp = fp = fn = 0 -> 0
    (["x", "y"], ["a", "b"], ["a", "b", "c"]),  # nothing right
    (["a", "c", "b"], ["a", "c", "z"], ["a", "b"]),  # gold outside the labels
]


@pytest.mark.parametrize("preds,golds,labels", MACRO_CASES)
def test_macro_f1_and_accuracy_match_sklearn(preds, golds, labels):
    from sklearn.metrics import accuracy_score

    want = _sk_macro_f1(golds, preds, labels)
    assert macro_f1(preds, golds, labels) == pytest.approx(want, abs=1e-12)
    corpus, per = score(["accuracy", "macro_f1"], preds, [[g] for g in golds], labels=labels)
    assert corpus["macro_f1"] == pytest.approx(100 * want, abs=1e-9)
    assert corpus["accuracy"] == pytest.approx(100 * accuracy_score(golds, preds), abs=1e-9)
    assert [row["accuracy"] for row in per] == [100.0 * (p == g) for p, g in zip(preds, golds)]


_LABELS = ["a", "b", "c", "d"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_LABELS + ["junk"]), st.sampled_from(_LABELS)), min_size=1, max_size=30),
    st.lists(st.sampled_from(_LABELS), min_size=1, max_size=4, unique=True),
)
def test_macro_f1_property_matches_sklearn(pairs, labels):
    preds, golds = [p for p, _ in pairs], [g for _, g in pairs]
    assert macro_f1(preds, golds, labels) == pytest.approx(_sk_macro_f1(golds, preds, labels), abs=1e-12)


def test_macro_f1_refuses_what_it_cannot_score():
    """No label set (sklearn: nan) and mismatched lengths (zip used to truncate silently)."""
    with pytest.raises(ValueError, match="label set"):
        macro_f1(["a"], ["a"], [])
    with pytest.raises(ValueError, match="label set"):
        score(["macro_f1"], ["a"], [["a"]])
    with pytest.raises(ValueError, match="predictions"):
        macro_f1(["a", "b"], ["a"], ["a", "b"])


# ----------------------------------------------------------------------------- known values
def test_metrics_known_values():
    corpus, per = score(
        ["rougeL", "bleu"], ["where is the key kept", "who"], [["Where is the key kept?"], ["what is it"]]
    )
    assert per[0]["rougeL"] == pytest.approx(100.0) and per[1]["rougeL"] == 0.0
    assert corpus["rougeL"] == pytest.approx(50.0)
    assert 0 < corpus["bleu"] < 100
    corpus, _ = score(["accuracy", "macro_f1"], ["a", "a", "b", "b"], [["a"], ["b"], ["b"], ["b"]], labels=["a", "b"])
    assert corpus["accuracy"] == 75.0
    assert corpus["macro_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2)


# ----------------------------------------------------------------------------- code and math (S3FT tasks)
# The S3FT tasks' metrics on real HumanEval and MathQA rows: unit tests run in the sandbox, and
# final numbers compared by value.
@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """name -> (examples, card) of a dataset prepared on first use (its asset fetched then)."""
    from ftgen.data import prepare_dataset
    from ftgen.study import Study, load_yaml

    out = tmp_path_factory.mktemp("s3ft-data")
    cfg = load_yaml(REPO / "config/studies/smoke.yaml")
    cfg["datasets"] = {
        "humaneval": {"split": {"seed": 0, "test": 20, "dev": 0, "fewshot": 0, "train": 100}},
        "mathqa_numeric": {"split": {"seed": 0, "test": 40, "dev": 0, "fewshot": 0, "train": 200}},
    }
    cfg["finetune"]["train_on"], cfg["finetune"]["sizes"] = ["humaneval"], [12]
    study = Study(cfg, source="t.yaml")
    paths = {}

    def prepared(name):
        if name in paths:
            return paths[name]
        spec = study.dataset_params(name)
        asset = study.asset_path(spec["source"]["asset"])
        fetch_or_skip(spec["source"]["asset"], study.assets[spec["source"]["asset"]], asset)
        card = prepare_dataset(
            spec=spec,
            asset=str(asset),
            examples=str(out / f"{name}.parquet"),
            card=str(out / f"{name}.card.json"),
            manifest=str(out / f"{name}.manifest.json"),
        )
        paths[name] = (out / f"{name}.parquet", card)
        return paths[name]

    return prepared


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail(datasets):
    path, card = datasets("humaneval")
    assert card["rows_valid"] == 164
    rows = pl.read_parquet(path).head(6).to_dicts()
    inputs = [r["inputs"] for r in rows]
    gold = [r["references"][0] for r in rows]
    assert score(["pass_at_1"], gold, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 100.0
    broken = ["    return None\n"] * len(rows)
    assert score(["pass_at_1"], broken, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 0.0
    # an instruct model's answer: the whole function again, in a fenced block
    fenced = f"Here you go:\n```python\n{inputs[0]['prompt']}{gold[0]}```\nDone."
    assert f"def {inputs[0]['entry_point']}" in program_of(fenced, inputs[0])
    assert score(["pass_at_1"], [fenced], [[gold[0]]], inputs=inputs[:1])[0]["pass_at_1"] == 100.0


def test_mathqa_numeric_rows_and_the_value_check(datasets):
    path, card = datasets("mathqa_numeric")
    assert card["rows_valid"] == 5060  # the rows of MathQA whose answer is a plain number
    rows = pl.read_parquet(path).head(5).to_dicts()
    refs = [r["references"] for r in rows]
    right = [f"Working... so the answer is {r[0]}." for r in refs]
    wrong = [f"The answer is {float(r[0]) + 1}" for r in refs]
    assert score(["math_match"], right, refs)[0]["math_match"] == 100.0
    assert score(["math_match"], wrong, refs)[0]["math_match"] == 0.0


def test_mbpp_rows_become_checkable_code_tasks(tmp_path):
    """MBPP's layout (saved with `datasets`, read back like the hub): canonical code passes its tests."""
    import datasets

    from ftgen.data import prepare_dataset

    rows = [
        {
            "task_id": 11,
            "text": "Write a function to add two numbers.",
            "code": "def add(a, b):\n    return a + b",
            "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
            "test_setup_code": "",
            "challenge_test_list": [],
        },
        {
            "task_id": 12,
            "text": "Write a function to square a number.",
            "code": "def sq(x):\n    return x * x",
            "test_list": ["assert sq(3) == 9"],
            "test_setup_code": "",
            "challenge_test_list": [],
        },
    ]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "mbpp"))
    params = {
        "name": "mbpp",
        "task": "code_completion",
        "task_type": "generation",
        "inputs": ["prompt", "test", "entry_point"],
        "labels": None,
        "source": {"adapter": "mbpp", "name": str(tmp_path / "mbpp"), "split": "train", "keep_whitespace": True},
        "split": {"seed": 0, "test": 2, "dev": 0, "fewshot": 0, "train": 0},
        "asset": None,
    }
    prepare_dataset(
        spec=params,
        examples=str(tmp_path / "m.parquet"),
        card=str(tmp_path / "c.json"),
        manifest=str(tmp_path / "mm.json"),
    )
    got = pl.read_parquet(tmp_path / "m.parquet").sort("id").to_dicts()
    assert got[0]["inputs"]["entry_point"] == "add" and "assert add(1, 2) == 3" in got[0]["inputs"]["prompt"]
    inputs, gold = [r["inputs"] for r in got], [r["references"][0] for r in got]
    fenced = [f"```python\n{g}\n```" for g in gold]  # an instruct model's answer
    assert score(["pass_at_1"], fenced, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 100.0
    wrong = ["```python\ndef add(a, b):\n    return a - b\n```", "```python\ndef sq(x):\n    return x\n```"]
    assert score(["pass_at_1"], wrong, [[g] for g in gold], inputs=inputs)[0]["pass_at_1"] == 0.0
