"""Reading the judge's score out of its reply.

The form ends with "- {name} (1-5):", so judges echo the label and the scale: the score is the
number after the label, never the "1" of "(1-5)". Sampled replies (`parse_score`) and the logprob
score position (`score_position`) follow the same rule, and the cache keeps raw replies / tokens,
so the score is parsed again on every read.
"""

from __future__ import annotations

import json
import math

import pytest
from conftest import REPO

from ftgen.artifacts import write_json
from ftgen.study import load_yaml
from ftgen.judge import Counters, JudgeCache, _ask_logprobs, _ask_sample, _seed, judge_cell, parse_score, score_position


@pytest.mark.parametrize("text,label,score", [
    ("- Accuracy (1-5): 4", "Accuracy", 4),  # the echoed form: not the "1" of "(1-5)"
    ("- Accuracy (1-5): 4", None, 4),
    ("Accuracy (1-5): 4 - the answer matches the reference, 1 detail is missing", "Accuracy", 4),
    ("**Accuracy:** 4", "Accuracy", 4),
    ("**Accuracy**: 5", "Accuracy", 5),
    ("Completeness: 3\nExplanation: the answer covers 1 of 5 points", "Completeness", 3),
    ("４", None, 4),  # fullwidth
    ("٤", None, 4),  # Arabic-Indic
    ("Score：２", None, 2),  # fullwidth colon and digit
    ("I'd give it a 3.", None, 3),
    ("3.0", None, 3),
    ("Accuracy (1-5):", "Accuracy", None),  # the echoed label without a score
    ("1-5: 4", None, 4),
    ("On a scale of 1 to 5, I would rate it 4.", None, 4),
    ("Between 1 and 5: 2", None, 2),
    ("3 or 4", None, None),  # two candidates, no label: ambiguous
    ("Score: 3-4", None, None),  # a range at the label
    ("Score: 3 to 4", None, None),
    ("The answer names 2 of the facts, I'd say 4", None, None),
    ("Accuracy: it names 2 facts correctly. Score: 4", "Accuracy", 4),  # the number right after a label
    ("Score: 3\nAccuracy: 4", "Accuracy", 4),  # the criterion's own label wins
    ("Completeness: 2\nAccuracy: 5", "Accuracy", 5),
    ("Score: 4/10", None, None),  # another scale
    ("4 out of 10", None, None),
    ("Score: -1", None, None),
    ("Accuracy (1-5) - is the candidate answer factually correct? 1 means wrong", "Accuracy", None),
    ("Exact match: 4", "Exact_match", 4),
])
def test_parse_score_regressions(text, label, score):
    """Replies the old parser (first stand-alone digit 1-5) read wrong."""
    assert (parse_score(text) if label is None else parse_score(text, label)) == score


@pytest.mark.parametrize("text,label,score", [
    ("4", None, 4),
    (" 4\n", None, 4),
    ("4/5", None, 4),
    ("Score: 4", None, 4),
    ("**4**", None, 4),
    ("## Score\n4", None, 4),
    ("The answer is accurate. Score: 5", None, 5),
    ("4 out of 5", None, 4),
    ("Rating: 4/5", None, 4),
    ("0", None, None),
    ("6", None, None),
    ("10", None, None),
    ("Score: 7", None, None),  # out of range at the label: missing, no other number is tried
    ("", None, None),
    ("no score given", None, None),
    ("3.5", None, None),  # not an integer score: missing, never rounded
    ("Score: 2 (on a 1-5 scale)", None, 2),
    ("- Accuracy: 2", None, 2),
    ("a rating of 5", None, 5),
    ("Score: 4 - 1 detail is missing", None, 4),  # a dash, not a range
])
def test_parse_score_keeps(text, label, score):
    """Replies the old parser already read right, and still must."""
    assert (parse_score(text) if label is None else parse_score(text, label)) == score


def positions(tokens):
    """Per token: (token, its own top-logprobs dict), told apart by identity."""
    return [(tok, {tok: math.log(0.9), "@": float(i)}) for i, tok in enumerate(tokens)]


def chosen_index(tokens, label=None):
    pos = positions(tokens)
    top = score_position(pos) if label is None else score_position(pos, label)
    return next(i for i, (_, t) in enumerate(pos) if t is top)


@pytest.mark.parametrize("tokens,label,index", [
    (["-", " Accuracy", " (", "1", "-", "5", "):", " 4"], "Accuracy", 7),  # the echoed form
    (["-", " Accuracy", " (", "1", "-", "5", "):", " 4"], None, 7),
    (["Accuracy", " (", "1", "-", "5", "):", "4"], "Accuracy", 6),  # tokens decoded without spaces
    (["Accuracy", "(", "1", " to", " ", "5", "):", " ", "3"], "Accuracy", 8),
    (["1", "-", "5", ":", " 4"], None, 4),
    (["Completeness", ":", " 3", "\n", "Accuracy", ":", " 4"], "Accuracy", 6),
    (["Score", ":", " ", "1", "0"], None, 0),  # "10" is no score digit: the first position
    (["-", " Accuracy", " (", "1", "-", "5", "):"], "Accuracy", 0),  # no score written: the first position
])
def test_score_position_skips_the_echoed_scale(tokens, label, index):
    assert chosen_index(tokens, label) == index


@pytest.mark.parametrize("tokens,index", [
    (["Score", ":", " 2", " (", "on", " a", " ", "1", "-", "5", " scale", ")"], 2),
    ([" ", "3"], 1),  # a judge may open with a space
    (["4", "/", "5"], 0),
    (["I", " cannot", " say"], 0),  # no score digit: the first position
])
def test_score_position_keeps(tokens, index):
    assert chosen_index(tokens) == index


def test_score_position_reads_cached_json_positions():
    # a cached record comes back from JSON with [token, top] lists, not tuples
    pos = json.loads(json.dumps([["-", {"-": -0.1}], [" Accuracy", {}], [" (", {}], ["1", {"1": -0.1}],
                                 ["-", {}], ["5", {"5": -0.1}], ["):", {}], [" 4", {"4": -0.2, "3": -1.9}]]))
    assert score_position(pos) == {"4": -0.2, "3": -1.9}
    assert score_position([]) is None


# ----------------------------------------------------------------------------- cache: parse again on read
ECHO = ["-", " Accuracy", " (", "1", "-", "5", "):", " 4"]
ECHO_TOP = {"4": math.log(0.7), "5": math.log(0.2), "3": math.log(0.1)}


class FakeJudge:
    """Scripted replies; counts every request; `id` and `deterministic_logprobs` as the real ones."""

    id = "fake:judge"
    deterministic_logprobs = False

    def __init__(self, replies=("- Accuracy (1-5): 4",)):
        self.replies = list(replies)
        self.generated, self.asked = [], 0

    def generate(self, prompt, temperature, seed, max_tokens):
        self.generated.append(seed)
        return self.replies[min(len(self.generated) - 1, len(self.replies) - 1)]

    def top_logprobs(self, prompts):
        self.asked += len(prompts)
        return [[(tok, ECHO_TOP if tok == " 4" else {tok.strip() or tok: math.log(0.95), "1": math.log(0.05)})
                 for tok in ECHO] for _ in prompts]


PARAMS = {"temperature": 1.0, "max_tokens": 8, "parse_retries": 2, "min_prob": 0.01}


def test_cached_sample_is_parsed_again_without_new_requests(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "sample", 0)
    # written by the old parser: the echoed "(1-5)" read as 1
    cache.put(key, {"score": 1, "status": "ok", "attempts": [{"reply": "- Accuracy (1-5): 4", "score": 1}]})
    backend, counters = FakeJudge(), Counters()
    record = _ask_sample(backend, PARAMS, cache, "prompt", 0, counters)
    assert record["score"] == 4 and record["status"] == "ok"
    assert record["attempts"] == [{"reply": "- Accuracy (1-5): 4", "score": 4}]
    assert backend.generated == [] and counters.requests == 0 and cache.hits == 1


def test_cached_sample_without_a_score_asks_only_the_attempts_left(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "sample", 0)
    # the old parser read "(1-5)" as a score, so the run stopped after one attempt
    cache.put(key, {"score": 1, "status": "ok", "attempts": [{"reply": "Accuracy (1-5):", "score": 1}]})
    backend = FakeJudge(["Score: 5"])
    record = _ask_sample(backend, PARAMS, cache, "prompt", 0, Counters())
    assert record["score"] == 5 and [a["score"] for a in record["attempts"]] == [None, 5]
    assert backend.generated == [_seed(key, 1)]  # the second attempt's seed, as in a fresh run
    assert json.loads(cache._path(key).read_text())["attempts"][-1]["reply"] == "Score: 5"
    again = FakeJudge()
    assert _ask_sample(again, PARAMS, cache, "prompt", 0, Counters())["score"] == 5
    assert again.generated == []


def test_logprobs_cache_keeps_positions_and_old_records_are_asked_again(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "logprobs", 0)
    # an old record: the top logprobs of the "1" in "(1-5)", no positions to choose again from
    cache.put(key, {"top": {"1": math.log(0.95)}, "reply": "".join(ECHO), "status": "asked"})
    backend, counters = FakeJudge(), Counters()
    (record,) = _ask_logprobs(backend, PARAMS, cache, ["prompt"], counters)
    expected = (4 * 0.7 + 5 * 0.2 + 3 * 0.1) / 1.0
    assert record["score"] == pytest.approx(expected) and record["status"] == "ok"
    assert backend.asked == 1 and cache.hits == 0  # the old record counted as a miss
    stored = json.loads(cache._path(key).read_text())
    assert [tok for tok, _ in stored["attempts"][0]["positions"]] == ECHO
    # a rerun re-chooses the position from the stored tokens: no request
    (again,) = _ask_logprobs(backend, PARAMS, cache, ["prompt"], counters)
    assert again["score"] == pytest.approx(expected) and backend.asked == 1 and cache.hits == 1


def test_logprobs_cached_positions_are_scored_again(tmp_path):
    cache = JudgeCache(tmp_path)
    key = cache.key(FakeJudge.id, "prompt", "logprobs", 0)
    pos = [[tok, ECHO_TOP if tok == " 4" else {tok: math.log(0.9), "1": math.log(0.1)}] for tok in ECHO]
    cache.put(key, {"attempts": [{"reply": "".join(ECHO), "positions": pos}], "status": "ok"})
    backend = FakeJudge()
    (record,) = _ask_logprobs(backend, PARAMS, cache, ["prompt"], Counters())
    assert record["top"] == ECHO_TOP and backend.asked == 0


def test_judge_cell_reads_the_score_after_the_echoed_label(tmp_path):
    params = load_yaml(REPO / "config/registry/judge.yaml")
    params.update(criteria={"accuracy": params["criteria"]["accuracy"]}, samples=2, score="logprobs")
    steps = tmp_path / "steps.json"
    write_json(steps, {"judge": FakeJudge.id, "criteria": {"accuracy": {
        "definition": params["criteria"]["accuracy"], "steps": "1. Compare.", "source": "pinned"}}})
    items = [{"id": "q0", "question": "q?", "prediction": "a", "references": ["a"], "scores": {}}]
    # without the label "4" and "1" would be two candidates: judge_cell must pass "Accuracy"
    backend = FakeJudge(["- Accuracy (1-5): 4 - 1 detail is missing"])
    summary = judge_cell(params, items, str(steps), backend, JudgeCache(tmp_path / "cache"), Counters(),
                         str(tmp_path / "j.jsonl"), str(tmp_path / "j.json"), log=lambda *_: None)
    row = json.loads((tmp_path / "j.jsonl").read_text().splitlines()[0])
    assert row["samples"] == [4, 4]
    assert row["logprob_score"] == pytest.approx(4 * 0.7 + 5 * 0.2 + 3 * 0.1)
    assert summary["criteria"]["accuracy"]["sample_score"] == 4.0
