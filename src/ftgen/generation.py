"""Model calls used by every study: label log-likelihoods and batched greedy generation.

All pad on the left and pass mask-derived position ids, so a padded row scores like the same
row alone; requests are sorted by length so batches carry little padding. The token prefix that
every request shares (a chat template's system turn, the task's instructions, few-shot
demonstrations) is run once: its KV cache is copied into each batch, which then runs only the
rest of each row (`[prefix][pads][row tail]`, pads masked out, positions continuing the prefix).

Each function takes an optional `counts` dict and adds what its forward passes ran, for the FLOPs
of `ftgen.compute.forward_flops`: `forward_tokens` (tokens through the model body, the shared
prefix once, padding not counted) and `head_positions` (positions whose logits were computed).
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading

import torch
from tqdm.auto import tqdm

MIN_SHARED_PREFIX = 8  # tokens; a shorter shared prefix is not worth a separate pass


def _add(counts: dict | None, **amounts: int) -> None:
    if counts is not None:
        for key, n in amounts.items():
            counts[key] = counts.get(key, 0) + int(n)


def autocast(bf16: bool, device: torch.device):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _cast_once(bf16: bool, device: torch.device):
    """A disabled autocast scope around a whole call: autocast keeps the bf16 copies it makes of the
    (fp32) weights until its outermost scope exits, so each weight is cast once per call instead of
    at every forward (every decoding step). The copies are only kept with grad mode off outside
    inference mode, hence `torch.no_grad` on the functions below. Numerics are unchanged."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=False)


_HEADS = threading.Lock()
_HEAD_USERS: dict[int, int] = {}  # id(head) -> calls inside fp32_head: the last one out restores it


@contextlib.contextmanager
def fp32_head(model, enabled: bool = True):
    """Project the scored positions to the vocabulary in fp32 even when the body runs in bf16.

    Logits made under bf16 autocast are bf16: log-likelihood gaps between labels then come in
    steps of 1/16 and exact ties are common (on a 64-example sentiment cell 4-8 tied, all resolved
    to the first label). The output projection's input (after the final norm) is fp32 in a
    mixed-precision model; only the projection is cast down. Here it runs outside autocast, on
    an fp32 copy of the weight (a no-op for fp32 weights) made once for calls that overlap (a
    model server scores several cells of one model at once on CPU).
    """
    head = model.get_output_embeddings() if enabled else None
    if head is None or not isinstance(head, torch.nn.Linear):
        yield
        return
    with _HEADS:  # a model server scores several cells of one model at once on CPU
        if not _HEAD_USERS.get(id(head)):
            weight = head.weight.float()
            bias = None if head.bias is None else head.bias.float()

            def forward(hidden):
                with torch.autocast(device_type=hidden.device.type, enabled=False):
                    return torch.nn.functional.linear(hidden.float(), weight, bias)

            head.forward = forward
        _HEAD_USERS[id(head)] = _HEAD_USERS.get(id(head), 0) + 1
    try:
        yield
    finally:
        with _HEADS:
            _HEAD_USERS[id(head)] -= 1
            if not _HEAD_USERS[id(head)]:
                del _HEAD_USERS[id(head)]
                del head.forward  # the class's own forward again


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


class _SharedPrefix:
    """The KV cache of the tokens all `contexts` start with (each keeps at least its last token).

    `batch(seqs)` left-pads the rows' tails after the prefix and returns (tail ids, mask over
    prefix + tail, tail position ids, a copy of the prefix cache for the batch, or None).
    """

    def __init__(self, model, contexts: list[list[int]], bf16: bool, device, counts: dict | None = None):
        n = 0
        if len(contexts) > 1:  # commonprefix compares the lexicographic min and max: O(prefix)
            n = min(len(os.path.commonprefix(contexts)), min(len(c) for c in contexts) - 1)
        self.n, self.ids, self.cache = (n if n >= MIN_SHARED_PREFIX else 0), None, None
        if self.n:
            self.ids = torch.tensor([contexts[0][: self.n]], dtype=torch.long, device=device)
            with autocast(bf16, device):
                self.cache = model(input_ids=self.ids, use_cache=True, logits_to_keep=1).past_key_values
            _add(counts, forward_tokens=self.n, head_positions=1)

    def batch(self, seqs: list[list[int]], pad_id: int, device):
        ids, mask = left_pad([s[self.n :] for s in seqs], pad_id, device)
        positions = self.n + (mask.cumsum(-1) - 1).clamp(min=0)
        if not self.n:
            return ids, mask, positions, None
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(len(seqs))
        full_mask = torch.cat([torch.ones((len(seqs), self.n), dtype=mask.dtype, device=device), mask], dim=1)
        return ids, full_mask, positions, cache


@torch.no_grad()
def loglikelihoods(
    model,
    pad_id: int,
    requests: list[tuple[list[int], list[int]]],
    batch_size: int = 16,
    bf16: bool = False,
    desc: str = "scoring",
    counts: dict | None = None,
) -> list[float]:
    """Sum of log p(continuation | context) for each (context_ids, continuation_ids) request."""
    device = next(model.parameters()).device
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    out = [0.0] * len(requests)
    with _cast_once(bf16, device), fp32_head(model):
        prefix = _SharedPrefix(model, [ctx for ctx, _ in requests], bf16, device, counts)
        for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
            idx = order[start : start + batch_size]
            ids, mask, positions, cache = prefix.batch([requests[i][0] + requests[i][1] for i in idx], pad_id, device)
            keep = max(len(requests[i][1]) for i in idx) + 1
            _add(counts, forward_tokens=mask.sum() - prefix.n * len(idx), head_positions=len(idx) * keep)
            with autocast(bf16, device):
                logits = model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=False,
                    logits_to_keep=keep,
                ).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(idx):
                cont = requests[i][1]
                n = len(cont)
                # logits at position t predict token t+1; the last `keep` positions end at the sequence end
                lp = logprobs[row, keep - 1 - n : keep - 1]
                target = torch.tensor(cont, device=device)
                out[i] = float(lp.gather(-1, target[:, None]).sum())
    return out


@torch.no_grad()
def option_loglikelihoods(
    model,
    pad_id: int,
    contexts: list[list[int]],
    options: list[list[list[int]]],
    batch_size: int = 16,
    bf16: bool = False,
    desc: str = "scoring",
    counts: dict | None = None,
) -> list[list[float]]:
    """Sum of log p(option | context) for every option of every context, running each context once.

    Contexts are left-padded so they all end at the same position; an option's first token is
    scored from its context's last logits, and its other tokens run on a copy of the context's KV
    cache, instead of re-encoding context + option per option. Those (context, option) pairs are
    batched longest first, so options of very different lengths (and numbers) pad little. Equal
    to `loglikelihoods` on the concatenations up to float rounding.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    out: list[list[float]] = [[0.0] * len(opts) for opts in options]
    with _cast_once(bf16, device), fp32_head(model):
        prefix = _SharedPrefix(model, contexts, bf16, device, counts)
        for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
            idx = order[start : start + batch_size]
            ids, mask, positions, cache = prefix.batch([contexts[i] for i in idx], pad_id, device)
            _add(counts, forward_tokens=mask.sum() - prefix.n * len(idx), head_positions=len(idx))
            with autocast(bf16, device):
                step_out = model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
            first = torch.log_softmax(step_out.logits[:, -1].float(), dim=-1)  # predicts each option's first token
            cache, next_pos = step_out.past_key_values, positions[:, -1:] + 1
            pairs = [(r, k) for r, i in enumerate(idx) for k in range(len(options[i]))]
            for r, k in pairs:
                out[idx[r]][k] = float(first[r, options[idx[r]][k][0]])
            longer = sorted(
                (p for p in pairs if len(options[idx[p[0]]][p[1]]) > 1), key=lambda p: -len(options[idx[p[0]]][p[1]])
            )
            for c0 in range(0, len(longer), batch_size):
                chunk = longer[c0 : c0 + batch_size]
                conts = [options[idx[r]][k] for r, k in chunk]
                width = len(conts[0]) - 1  # tokens 0..n-2 in, tokens 1..n-1 scored; right-padded
                inp = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                tgt = torch.zeros((len(chunk), width), dtype=torch.long)
                valid = torch.zeros((len(chunk), width))
                for m, c in enumerate(conts):
                    inp[m, : len(c) - 1], tgt[m, : len(c) - 1] = torch.tensor(c[:-1]), torch.tensor(c[1:])
                    valid[m, : len(c) - 1] = 1
                rows = torch.tensor([r for r, _ in chunk], device=device)
                sub = copy.deepcopy(cache)
                sub.batch_select_indices(rows)
                with autocast(bf16, device):
                    logits = model(
                        input_ids=inp.to(device),
                        past_key_values=sub,
                        use_cache=True,
                        attention_mask=torch.cat([mask[rows], torch.ones_like(inp, device=device)], dim=1),
                        position_ids=next_pos[rows] + torch.arange(width, device=device)[None, :],
                    ).logits
                lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tgt.to(device)[..., None])[..., 0]
                _add(counts, forward_tokens=valid.sum(), head_positions=inp.numel())
                for (r, k), score in zip(chunk, (lp * valid.to(device)).sum(-1).tolist()):
                    out[idx[r]][k] += score
    return out


@torch.no_grad()
def greedy_generate(
    model,
    tok,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 16,
    bf16: bool = False,
    stop: str | None = "\n\n",
    desc: str = "generating",
    counts: dict | None = None,
) -> list[str]:
    """Batched greedy decoding with KV cache; each output is cut at the first `stop` (if any).
    `counts["generated_tokens"]` (if given) adds the positions decoded: rows x steps per batch,
    what the device computed, including rows that had already stopped; each step reads one
    position's logits per row and feeds its token back in, but the last."""
    from transformers import StoppingCriteriaList, StopStringCriteria

    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out = [""] * len(prompts)
    with _cast_once(bf16, device):
        prefix = _SharedPrefix(model, prompts, bf16, device, counts)
        # built once (it indexes the whole vocabulary), not per batch as `stop_strings=` would
        criteria = StoppingCriteriaList([StopStringCriteria(tok, [stop])]) if stop else None
        for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
            idx = order[start : start + batch_size]
            tail, mask, _, cache = prefix.batch([prompts[i] for i in idx], tok.pad_token_id, device)
            # generate takes the whole rows (prefix + tail) and runs only what the cache lacks
            ids = tail if cache is None else torch.cat([prefix.ids.expand(len(idx), -1), tail], dim=1)
            with autocast(bf16, device):
                gen = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    past_key_values=cache,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    use_cache=True,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                    stopping_criteria=criteria,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            rows, steps = gen.shape[0], gen.shape[1] - ids.shape[1]
            fed_back = rows * max(steps - 1, 0)
            _add(counts, generated_tokens=rows * steps, head_positions=rows * steps)
            _add(counts, forward_tokens=mask.sum() - prefix.n * rows + fed_back)
            for row, i in enumerate(idx):
                text = tok.decode(gen[row, ids.shape[1] :], skip_special_tokens=True)
                out[i] = (text.split(stop)[0] if stop else text).strip()
    return out
