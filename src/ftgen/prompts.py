"""Prompts: task template + example (+ demonstrations) -> (prompt, continuation) -> token ids.

One code path serves training, classification scoring and generation, so the text a model is
trained on is exactly the text it is evaluated on. Demonstrations are rendered as
`prompt + " " + target + "\\n\\n"` before the example (Yang et al.'s few-shot/FTICL format).
With `chat_template`, the whole body is one user turn and the answer is the assistant turn.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Encoded:
    prompt_ids: list[int]
    target_ids: list[int]
    truncated: bool
    prompt_text: str


def say_labels(labels: list[str]) -> str:
    """A label set as a prompt names it: "a or b", "a, b or c"."""
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"


def render_body(prompt_spec: dict, fmt: int, inputs: dict) -> str:
    """The template filled with the example's inputs; `{labels}` names the labels this dataset is
    scored on (RTE's two inside NLI's three), so the prompt never offers an unscored label."""
    template = prompt_spec["prompts"][str(fmt)]
    if "{labels}" in template:
        return template.format(**inputs, labels=say_labels(prompt_spec["labels"]))
    return template.format(**inputs)


def target_of(prompt_spec: dict, example: dict) -> str:
    return (
        example["label"] if prompt_spec["type"] in ("classification", "multiple_choice") else example["references"][0]
    )


def with_demos(prompt_spec: dict, fmt: int, body: str, demos: list[dict]) -> str:
    shots = "".join(f"{render_body(prompt_spec, fmt, d['inputs'])} {target_of(prompt_spec, d)}\n\n" for d in demos)
    return shots + body


def wrap(tok, prompt_spec: dict, body: str) -> str:
    """The full prompt string up to where the answer starts."""
    if prompt_spec["chat_template"]:
        return tok.apply_chat_template([{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True)
    return body


def continuation(prompt_spec: dict, answer: str) -> str:
    return answer if prompt_spec["chat_template"] else " " + answer


def encode_pair(tok, prompt_spec: dict, prompt: str, cont: str) -> tuple[list[int], list[int]]:
    """lm-eval's split: encode(prompt + cont) cut at len(encode(prompt)), so merges match."""
    special = not prompt_spec["chat_template"]  # a chat template already carries its special tokens
    whole = tok(prompt + cont, add_special_tokens=special)["input_ids"]
    ctx = tok(prompt, add_special_tokens=special)["input_ids"]
    return whole[: len(ctx)], whole[len(ctx) :]


def _cap(lengths: list[int], need: int) -> int:
    """The largest per-field token cap that removes at least `need` tokens (water-filling)."""
    lo, hi = 1, max(lengths)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if sum(max(0, n - mid) for n in lengths) >= need else (lo, mid - 1)
    return lo


def encode_example(
    tok, prompt_spec: dict, fmt: int, example: dict, demos: list[dict], answer: str | None, budget: int
) -> Encoded:
    """Encode prompt (+ answer) within `budget` tokens, shortening inputs, never the answer.

    Input fields of the example and of its demonstrations (their answers are kept) are cut to
    a common token cap, longest first, until everything fits: a long few-shot document must not
    push the example out. If that cannot make it fit, the prompt is cut from the left.
    """
    inputs = dict(example["inputs"])
    demos = [{**d, "inputs": dict(d["inputs"])} for d in demos]
    slots = [(f, k) for f in [inputs] + [d["inputs"] for d in demos] for k in f]
    truncated = False
    for _ in range(8):
        prompt = wrap(tok, prompt_spec, with_demos(prompt_spec, fmt, render_body(prompt_spec, fmt, inputs), demos))
        p_ids, t_ids = (
            encode_pair(tok, prompt_spec, prompt, continuation(prompt_spec, answer))
            if answer is not None
            else (tok(prompt, add_special_tokens=not prompt_spec["chat_template"])["input_ids"], [])
        )
        overflow = len(p_ids) + len(t_ids) - budget
        if overflow <= 0:
            return Encoded(p_ids, t_ids, truncated, prompt)
        ids = [tok(owner[k], add_special_tokens=False)["input_ids"] for owner, k in slots]
        if max(map(len, ids)) <= 1:
            break
        cap = _cap([len(i) for i in ids], overflow + 2)
        for (owner, k), field_ids in zip(slots, ids):
            if len(field_ids) > cap:
                owner[k] = tok.decode(field_ids[:cap], skip_special_tokens=True)
        truncated = True
    room = max(1, budget - len(t_ids))
    return Encoded(p_ids[-room:], t_ids[: budget - 1], True, prompt)
