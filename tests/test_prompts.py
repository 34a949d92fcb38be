"""Prompt encoding with the tiny model's tokenizer: inputs and demonstrations truncated, never the
target; the chat template wraps the prompt."""

from ftgen.modeling import load_tokenizer
from ftgen.prompts import encode_example, encode_pair
from helpers import PP


def test_encoding_truncates_input_never_target(tiny_model):
    tok = load_tokenizer(tiny_model)
    long = {"inputs": {"text": "word " * 200}, "label": "positive", "references": ["positive"]}
    enc = encode_example(tok, PP, 0, long, [], "positive", budget=40)
    assert enc.truncated and len(enc.prompt_ids) + len(enc.target_ids) <= 40
    assert tok.decode(enc.target_ids).strip() == "positive"
    assert tok.decode(enc.prompt_ids).rstrip().endswith("### Sentiment:")
    ctx, cont = encode_pair(tok, PP, "### Sentiment:", " positive")
    assert tok.decode(ctx + cont) == "### Sentiment: positive"


def test_encoding_shortens_long_demonstrations_not_their_answers(tiny_model):
    tok = load_tokenizer(tiny_model)
    demo = {"inputs": {"text": "demo " * 300}, "label": "negative", "references": ["negative"]}
    example = {"inputs": {"text": "query " * 100}, "label": "positive", "references": ["positive"]}
    enc = encode_example(tok, PP, 0, example, [demo], "positive", budget=80)
    text = tok.decode(enc.prompt_ids)
    assert enc.truncated and len(enc.prompt_ids) + len(enc.target_ids) <= 80
    # both inputs were cut to a common cap; the demo's answer and the prompt's start survive
    assert text.startswith("### Input:\ndemo") and "### Sentiment: negative\n\n### Input:\nquery" in text
    assert text.count("demo") >= 3 and text.count("query") >= 3
    assert tok.decode(enc.target_ids).strip() == "positive"


def test_chat_template_wraps_prompt(tiny_model):
    tok = load_tokenizer(tiny_model)
    pp = {**PP, "chat_template": True}
    enc = encode_example(
        tok,
        pp,
        0,
        {"inputs": {"text": "ok"}, "label": "positive", "references": ["positive"]},
        [],
        "positive",
        budget=64,
    )
    text = tok.decode(enc.prompt_ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
