"""Metrics: ROUGE-L (rouge-score), BLEU (sacrebleu), accuracy, macro-F1, EM / token F1.

`per_example` gives each prediction its own score (kept in predictions.jsonl for bootstrap
confidence intervals); `corpus` gives the dataset-level figure reported in scores.json.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: list[str]) -> float:
    return max(_rouge().score(ref, prediction)["rougeL"].fmeasure for ref in references)


def _normalise(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: list[str]) -> float:
    return float(any(_normalise(prediction) == _normalise(r) for r in references))


def token_f1(prediction: str, references: list[str]) -> float:
    best = 0.0
    pred = _normalise(prediction).split()
    for ref in references:
        gold = _normalise(ref).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


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
    f1s = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predictions, golds))
        fp = sum(p == label and g != label for p, g in zip(predictions, golds))
        fn = sum(p != label and g == label for p, g in zip(predictions, golds))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
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


def score(metrics: list[str], predictions: list[str], references: list[list[str]],
          labels: list[str] | None = None, inputs: list[dict] | None = None
          ) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Corpus-level scores (0-100 scale for every metric) and per-example scores. `inputs` (the
    examples' input fields) is needed by `pass_at_1`, which runs the examples' unit tests."""
    per = [{m: PER_EXAMPLE[m](p, r) * (1 if m == "bleu" else 100)
            for m in metrics if m in PER_EXAMPLE} for p, r in zip(predictions, references)]
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
