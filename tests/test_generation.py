"""ftgen.generation on the tiny model: batched scoring and greedy generation equal unbatched, option
scoring with a shared context equals full scoring, the shared-prefix KV cache and ragged option
counts change no result, and option scores in bf16 are not quantised."""

import pytest
import torch

from ftgen import generation
from ftgen.generation import greedy_generate, loglikelihoods, option_loglikelihoods
from ftgen.modeling import load_model, load_tokenizer
from ftgen.prompts import encode_pair
from helpers import PP, label_requests


def test_batched_scoring_and_generation_match_unbatched(tiny_model):
    model, tok = load_model(tiny_model), load_tokenizer(tiny_model)
    texts = ["the movie was good", "a", "the food service people were bad and the story was terrible"]
    reqs = [encode_pair(tok, PP, t, " positive") for t in texts]
    batched = loglikelihoods(model, tok.pad_token_id, reqs, batch_size=3)
    single = [loglikelihoods(model, tok.pad_token_id, [r], batch_size=1)[0] for r in reqs]
    assert batched == pytest.approx(single, abs=1e-4)
    # and it is the real log-likelihood: compare with a plain forward pass
    ctx, cont = reqs[0]
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits.log_softmax(-1)[0]
    manual = sum(float(logits[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
    assert batched[0] == pytest.approx(manual, abs=1e-4)
    prompts = [tok(t)["input_ids"] for t in texts]
    gb = greedy_generate(model, tok, prompts, max_new_tokens=6, batch_size=3)
    gs = [greedy_generate(model, tok, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert gb == gs


def test_option_scoring_with_shared_context_matches_full_scoring(tiny_model):
    from ftgen.generation import option_loglikelihoods

    model, tok = load_model(tiny_model), load_tokenizer(tiny_model)
    texts = ["the movie was good", "a", "the food service people were bad and the story was terrible", "no"]
    labels = [" positive", " negative", " neutral entailment contradiction"]
    contexts, options, flat = [], [], []
    for t in texts:
        pairs = [encode_pair(tok, PP, t, lab) for lab in labels]
        assert all(p[0] == pairs[0][0] for p in pairs)
        contexts.append(pairs[0][0])
        options.append([p[1] for p in pairs])
        flat += pairs
    shared = option_loglikelihoods(model, tok.pad_token_id, contexts, options, batch_size=3)
    full = loglikelihoods(model, tok.pad_token_id, flat, batch_size=5)
    assert [x for row in shared for x in row] == pytest.approx(full, abs=1e-4)


def test_option_scoring_in_bf16_has_no_quantised_gaps(sharp_model):
    tok, model = load_tokenizer(sharp_model), load_model(sharp_model)
    prompts, per_prompt = label_requests(tok)
    ctx = [pairs[0][0] for pairs in per_prompt]
    opts = [[cont for _, cont in pairs] for pairs in per_prompt]
    rows = option_loglikelihoods(model, tok.pad_token_id, ctx, opts, batch_size=8, bf16=True)
    gaps = [abs(r[0] - r[1]) for r in rows]
    on_grid = sum(abs(g * 16 - round(g * 16)) < 1e-6 for g in gaps)
    assert on_grid <= 2, f"{on_grid} of {len(gaps)} gaps are multiples of 1/16"


# ----------------------------------------------------------------------------- the shared-prefix KV cache
# The shared-prefix KV cache and ragged option counts in ftgen.generation change no result.
#
# Each request scored or generated through a prefix that all requests share (a chat template's
# system turn, few-shot demonstrations) must equal the same request run alone from scratch.
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
