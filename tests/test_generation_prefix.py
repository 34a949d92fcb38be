"""The shared-prefix KV cache and ragged option counts in ftgen.generation change no result.

Each request scored or generated through a prefix that all requests share (a chat template's
system turn, few-shot demonstrations) must equal the same request run alone from scratch.
"""

import pytest
import torch

from ftgen import generation
from ftgen.generation import greedy_generate, loglikelihoods, option_loglikelihoods
from ftgen.modeling import load_model, load_tokenizer

SHARED = "the movie was good and the food was bad and the story was terrible . "
TEXTS = ["what is it", "a", "the people were good and the service was bad", "no"]


@pytest.fixture(scope="module")
def model_tok(tiny_model):
    return load_model(tiny_model), load_tokenizer(tiny_model)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _alone(model, ctx, cont):
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits.log_softmax(-1)[0]
    return sum(float(logits[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


def test_shared_prefix_is_used_and_scores_match_each_request_alone(model_tok, monkeypatch):
    model, tok = model_tok
    contexts = [_ids(tok, SHARED + t) for t in TEXTS]
    assert generation._SharedPrefix(model, contexts, False, torch.device("cpu")).n >= generation.MIN_SHARED_PREFIX
    conts = [_ids(tok, " positive"), _ids(tok, " neutral entailment contradiction")]
    reqs = [(c, o) for c in contexts for o in conts]
    got = loglikelihoods(model, tok.pad_token_id, reqs, batch_size=3)
    assert got == pytest.approx([_alone(model, c, o) for c, o in reqs], abs=1e-4)
    # and the same numbers without the prefix cache (the path every request took before)
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**6)
    assert loglikelihoods(model, tok.pad_token_id, reqs, batch_size=3) == pytest.approx(got, abs=1e-4)


def test_option_scoring_with_ragged_option_counts_and_a_shared_prefix(model_tok):
    model, tok = model_tok
    contexts = [_ids(tok, SHARED + t) for t in TEXTS]
    labels = [" positive", " negative", " neutral entailment contradiction", " yes"]
    options = [[_ids(tok, lab) for lab in labels[: 1 + (i % 4)]] for i in range(len(contexts))]  # 1..4 options
    got = option_loglikelihoods(model, tok.pad_token_id, contexts, options, batch_size=3)
    assert [len(r) for r in got] == [len(o) for o in options]
    want = [[_alone(model, c, o) for o in opts] for c, opts in zip(contexts, options)]
    assert [x for r in got for x in r] == pytest.approx([x for r in want for x in r], abs=1e-4)


def test_generation_through_a_shared_prefix_matches_unbatched(model_tok, monkeypatch):
    model, tok = model_tok
    prompts = [_ids(tok, SHARED + t) for t in TEXTS]
    batched = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=3)
    single = [greedy_generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single
    monkeypatch.setattr(generation, "MIN_SHARED_PREFIX", 10**6)
    assert greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=3) == batched
