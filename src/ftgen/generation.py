"""Model calls used by every study: label log-likelihoods and batched greedy generation.

Both pad on the left and pass mask-derived position ids, so a padded row scores like the same
row alone; requests are sorted by length so batches carry little padding.
"""

from __future__ import annotations

import contextlib

import torch
from tqdm.auto import tqdm


def autocast(bf16: bool, device: torch.device):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def loglikelihoods(model, pad_id: int, requests: list[tuple[list[int], list[int]]], batch_size: int = 16,
                   bf16: bool = False, desc: str = "scoring") -> list[float]:
    """Sum of log p(continuation | context) for each (context_ids, continuation_ids) request."""
    device = next(model.parameters()).device
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    out = [0.0] * len(requests)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
        idx = order[start:start + batch_size]
        seqs = [requests[i][0] + requests[i][1] for i in idx]
        ids, mask = _left_pad(seqs, pad_id, device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(len(requests[i][1]) for i in idx) + 1
        with autocast(bf16, device):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, i in enumerate(idx):
            cont = requests[i][1]
            n = len(cont)
            # logits at position t predict token t+1; the last `keep` positions end at the sequence end
            lp = logprobs[row, keep - 1 - n: keep - 1]
            target = torch.tensor(cont, device=device)
            out[i] = float(lp.gather(-1, target[:, None]).sum())
    return out


@torch.inference_mode()
def option_loglikelihoods(model, pad_id: int, contexts: list[list[int]], options: list[list[list[int]]],
                          batch_size: int = 16, bf16: bool = False, desc: str = "scoring") -> list[list[float]]:
    """Sum of log p(option | context) for every option of every context, running each context once.

    Contexts are left-padded so they all end at the same position; their KV cache is then reused
    for each option (cropped back after it), instead of re-encoding context + option per option.
    Equal to `loglikelihoods` on the concatenations up to float rounding.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(contexts)), key=lambda i: -len(contexts[i]))
    out: list[list[float]] = [[] for _ in contexts]
    for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
        idx = order[start:start + batch_size]
        ids, mask = _left_pad([contexts[i] for i in idx], pad_id, device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with autocast(bf16, device):
            res = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(res.logits[:, -1].float(), dim=-1)  # predicts each option's first token
        cache = res.past_key_values
        next_pos = positions[:, -1:] + 1
        for j in range(len(options[idx[0]])):
            conts = [options[i][j] for i in idx]
            width = max(len(c) for c in conts)
            scores = [float(first[r, c[0]]) for r, c in enumerate(conts)]
            if width > 1:
                tail = torch.full((len(idx), width - 1), pad_id, dtype=torch.long, device=device)
                for r, c in enumerate(conts):
                    tail[r, : len(c) - 1] = torch.tensor(c[:-1], device=device)
                full_mask = torch.cat([mask, torch.ones_like(tail)], dim=1)
                pos = next_pos + torch.arange(width - 1, device=device)[None, :]
                with autocast(bf16, device):
                    logits = model(input_ids=tail, attention_mask=full_mask, position_ids=pos,
                                   past_key_values=cache, use_cache=True).logits
                lp = torch.log_softmax(logits.float(), dim=-1)
                for r, c in enumerate(conts):
                    scores[r] += float(sum(lp[r, t - 1, c[t]] for t in range(1, len(c))))
                cache.crop(-(width - 1))  # drop this option, keep the shared context
            for r, i in enumerate(idx):
                out[i].append(scores[r])
    return out


@torch.inference_mode()
def greedy_generate(model, tok, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16,
                    bf16: bool = False, stop: str | None = "\n\n", desc: str = "generating") -> list[str]:
    """Batched greedy decoding with KV cache; each output is cut at the first `stop` (if any)."""
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out = [""] * len(prompts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, mininterval=5):
        idx = order[start:start + batch_size]
        ids, mask = _left_pad([prompts[i] for i in idx], tok.pad_token_id, device)
        with autocast(bf16, device):
            gen = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                num_beams=1, use_cache=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                stop_strings=[stop] if stop else None, tokenizer=tok, temperature=None, top_p=None, top_k=None,
            )
        for row, i in enumerate(idx):
            text = tok.decode(gen[row, ids.shape[1]:], skip_special_tokens=True)
            out[i] = (text.split(stop)[0] if stop else text).strip()
    return out
