"""Metrics: ROUGE-L (rouge-score), BLEU (sacrebleu), accuracy, macro-F1, EM / token F1.

`per_example` gives each prediction its own score (kept in predictions.jsonl for bootstrap
confidence intervals); `corpus` gives the dataset-level figure reported in scores.json.
Each metric is checked against its reference implementation in tests/test_metrics.py
(the official SQuAD v2.0 script, rouge-score, sacrebleu, scikit-learn).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import cache, partial

ROUGE_TYPES = ("rougeL", "rougeLsum")
# What the code did before ROUGE became a task option; a task without `rouge:` keeps it.
ROUGE_DEFAULTS = {"type": "rougeL", "stemmer": True}


@cache
def _rouge(rouge_type: str = "rougeL", stemmer: bool = True):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([rouge_type], use_stemmer=stemmer)


# A sentence ends at . ! or ? (and any closing quotes / brackets) followed by white space and a
# capital letter or digit, optionally behind an opening quote or bracket. No nltk: rouge-score's
# own `split_summaries=True` needs nltk's punkt data, which an offline node may not have.
_SENT_END = re.compile(r"""([.!?]["'\u201d\u2019)\]]*)\s+(?=["'\u201c\u2018(\[]?[A-Z0-9])""")


def rouge_sentences(text: str) -> str:
    """`text` with one sentence per line, as rouge-score's rougeLsum expects (it splits on "\\n"
    and ignores empty lines). Text that already has a newline is taken as split by its author and
    kept; otherwise a newline replaces the white space after each sentence end (see _SENT_END)."""
    return text if "\n" in text else _SENT_END.sub("\\1\n", text)


def rouge_options(options: dict | None) -> dict:
    """A task's `rouge:` option completed with the defaults, checked (the task schema checks it
    too, but metrics can be called with hand-made options)."""
    opts = {**ROUGE_DEFAULTS, **(options or {})}
    if set(opts) != set(ROUGE_DEFAULTS) or opts["type"] not in ROUGE_TYPES or not isinstance(opts["stemmer"], bool):
        raise ValueError(
            f"rouge options must be {{type: {' | '.join(ROUGE_TYPES)}, stemmer: true | false}}, got {options!r}"
        )
    return opts


def rouge_l(prediction: str, references: list[str], rouge_type: str = "rougeL", stemmer: bool = True) -> float:
    """Best F-measure over the references: rouge-score's `RougeScorer([rouge_type],
    use_stemmer=stemmer).score(reference, prediction)`. rougeL is the LCS of the whole texts;
    rougeLsum the summary-level (union) LCS over sentences, split by `rouge_sentences`."""
    if rouge_type == "rougeLsum":
        prediction, references = rouge_sentences(prediction), [rouge_sentences(r) for r in references]
    scorer = _rouge(rouge_type, stemmer)
    return max(scorer.score(ref, prediction)[rouge_type].fmeasure for ref in references)


_PUNCT = frozenset(string.punctuation)


def _normalise(text: str) -> str:
    """SQuAD's normalize_answer: lower case, drop ASCII punctuation, drop a/an/the, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _squad_golds(references: list[str]) -> list[str]:
    """The official SQuAD v2.0 script's gold answers: references that normalise to nothing are
    dropped, and if none is left the only correct answer is the empty string."""
    return [r for r in references if _normalise(r)] or [""]


def exact_match(prediction: str, references: list[str]) -> float:
    """SQuAD v2.0's compute_exact, max over the gold answers (see _squad_golds)."""
    pred = _normalise(prediction)
    return float(any(pred == _normalise(r) for r in _squad_golds(references)))


def _token_f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:  # SQuAD v2.0: if either is empty, 1 if they agree, 0 otherwise
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    p, r = 1.0 * common / len(pred), 1.0 * common / len(gold)
    return (2 * p * r) / (p + r)


def token_f1(prediction: str, references: list[str]) -> float:
    """Bag-of-tokens F1 with the official SQuAD **v2.0** script's semantics (evaluate-v2.0.py:
    compute_f1, max over the gold answers of get_raw_scores): an empty normalised prediction
    scores 1 against an empty gold answer and 0 against a non-empty one. (v1.1's f1_score gives 0
    whenever no token is shared, so empty vs empty scored 0 there, as it did here before.)"""
    pred = _normalise(prediction).split()
    return max(_token_f1(pred, _normalise(r).split()) for r in _squad_golds(references))


def _ref_streams(references: list[list[str]]) -> list[list[str]]:
    """sacrebleu wants one stream per reference slot; a missing slot repeats the first reference
    (a duplicate reference changes neither clipped counts nor the closest length)."""
    width = max(len(r) for r in references)
    return [[refs[i] if i < len(refs) else refs[0] for refs in references] for i in range(width)]


def bleu_stats(predictions: list[str], references: list[list[str]]):
    """Per-sentence BLEU sufficient statistics (rows sum to corpus statistics): fast bootstrap."""
    import numpy as np
    from sacrebleu.metrics import BLEU

    return np.array(BLEU()._extract_corpus_statistics(predictions, _ref_streams(references)))


def bleu_from_stats(stats) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU()._compute_score_from_stats(list(stats.sum(axis=0))).score


def bleu_corpus(predictions: list[str], references: list[list[str]]) -> float:
    return bleu_from_stats(bleu_stats(predictions, references))


def bleu_sentence(prediction: str, references: list[str]) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(prediction, references).score


def macro_f1(predictions: list[str], golds: list[str], labels: list[str]) -> float:
    """Unweighted mean of the per-label F1 over `labels` (the task's label set), as scikit-learn's
    `f1_score(golds, predictions, labels=labels, average="macro", zero_division=0)`: a label
    never predicted and never gold scores 0; a prediction outside the label set counts only as a
    miss of its gold label (a false negative), never as a label of its own."""
    if len(predictions) != len(golds):
        raise ValueError(f"macro_f1: {len(predictions)} predictions but {len(golds)} gold labels")
    if not labels:
        raise ValueError("macro_f1 needs the task's label set (got none)")
    tp, fp, fn = Counter(), Counter(), Counter()
    for p, g in zip(predictions, golds):
        if p == g:
            tp[p] += 1
        else:
            fp[p] += 1
            fn[g] += 1
    f1s = [2 * tp[x] / (2 * tp[x] + fp[x] + fn[x]) if tp[x] else 0.0 for x in labels]
    return sum(f1s) / len(f1s)


PER_EXAMPLE = {
    "accuracy": lambda pred, refs: float(pred == refs[0]),
    "rougeL": rouge_l,
    "bleu": bleu_sentence,
    "exact_match": exact_match,
    "token_f1": token_f1,
}


def math_match(prediction: str, references: list[str]) -> float:
    """The final number of the answer equals the gold answer's, as a value (ftgen.checkers)."""
    from .checkers import same_number

    return float(any(same_number(prediction, r) for r in references))


def program_of(prediction: str, inputs: dict) -> str:
    """The program a code completion stands for: the first fenced code block if the model wrote
    one (instruct models repeat the whole function), else the prompt + the completion."""
    m = re.search(r"```(?:python|py)?\n(.*?)(?:```|$)", prediction, re.S)
    code = m.group(1) if m else prediction
    if re.search(rf"def\s+{re.escape(inputs['entry_point'])}\s*\(", code):
        header = "\n".join(line for line in inputs["prompt"].splitlines() if line.startswith(("import ", "from ")))
        return f"{header}\n{code}"
    return inputs["prompt"] + code


def pass_at_1(prediction: str, inputs: dict, limits=None) -> float:
    """HumanEval's check: the program + its unit tests run in the sandbox and exit cleanly."""
    from .sandbox import run_python

    program = f"{program_of(prediction, inputs)}\n\n{inputs['test']}\n\ncheck({inputs['entry_point']})\n"
    return float(run_python(program, limits).status == "pass")


PER_EXAMPLE["math_match"] = math_match


METRIC_OPTIONS = ("rouge",)  # the task keys that configure metrics (config: eval_params["metric_options"])


def score(
    metrics: list[str],
    predictions: list[str],
    references: list[list[str]],
    labels: list[str] | None = None,
    inputs: list[dict] | None = None,
    options: dict | None = None,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Corpus-level scores (0-100 scale for every metric) and per-example scores. `inputs` (the
    examples' input fields) is needed by `pass_at_1`, which runs the examples' unit tests.
    `options` are the task's metric options (eval params' `metric_options`, absent = defaults):
    `{"rouge": {"type": "rougeL" | "rougeLsum", "stemmer": bool}}`; the ROUGE score stays under
    the metric name `rougeL` whichever variant the task chose."""
    options = options or {}
    unknown = set(options) - set(METRIC_OPTIONS)
    if unknown:
        raise ValueError(f"unknown metric options {sorted(unknown)}; known: {list(METRIC_OPTIONS)}")
    ro = rouge_options(options.get("rouge"))
    fns = {**PER_EXAMPLE, "rougeL": partial(rouge_l, rouge_type=ro["type"], stemmer=ro["stemmer"])}
    per = [
        {m: fns[m](p, r) * (1 if m == "bleu" else 100) for m in metrics if m in fns}
        for p, r in zip(predictions, references)
    ]
    if "pass_at_1" in metrics:
        if inputs is None:
            raise ValueError("pass_at_1 needs the examples' inputs (prompt, test, entry_point)")
        for row, p, inp in zip(per, predictions, inputs):
            row["pass_at_1"] = 100 * pass_at_1(p, inp)
    corpus = {}
    for m in metrics:
        if m == "bleu":
            corpus[m] = bleu_corpus(predictions, references)
        elif m == "macro_f1":
            corpus[m] = 100 * macro_f1(predictions, [r[0] for r in references], labels or [])
        else:
            corpus[m] = sum(row[m] for row in per) / max(1, len(per))
    return corpus, per
