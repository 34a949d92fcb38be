"""G-Eval judge: evaluation steps written once per criterion, then a form filled with a 1-5 score.

Two scores per (item, criterion), both recorded:
- `logprobs`: the probability-weighted mean over the score tokens "1".."5" at the position where
  the judge writes its score (G-Eval; tokens under `min_prob` dropped, as DeepEval does);
- `samples`: n judgements sampled at `temperature`, parsed to integers; mean and sd.

Backends: a local Hugging Face model, or any OpenAI-compatible endpoint (vLLM, OpenAI) through
the `openai` client; its API key is read from the environment variable the config names and is
never written anywhere. Every judgement is cached on disk keyed by (judge, prompt, sample index),
so a rerun or a resumed partial run asks nothing twice. The cache keeps what the judge wrote (the
replies; for logprobs every generated token with its top logprobs), never a parsed score: scores
and score positions are parsed again on every read (`parse_score`, `score_position`), so a parser
fix needs no new requests. A reply without a score is re-asked up to `parse_retries` times and
then cached as missing; a transport failure (timeout, 5xx, connection) is retried with
exponential backoff and, if it persists, counted as missing but *not* cached, so the next run
asks again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import atomic_file, manifest, read_json, write_json
from .step import Folder, Input, Json, JudgedCell, OptionalInput, Output, Threads

SCORES = ("1", "2", "3", "4", "5")


class JudgeUnavailable(RuntimeError):
    """The judge could not be reached after every retry (not cached: the next run asks again)."""


# ----------------------------------------------------------------------------- scoring
# Scale descriptions name the scale, not a score: "(1-5)", "1 to 5", "between 1 and 5", "/5",
# "out of 5", "5-point", "1 means". They are blanked (same length: offsets still match) before parsing.
_SCALE_RE = re.compile(
    r"\(?[ \t]*(?<![\d.])1\s*(?:-|–|—|to|and)\s*5(?![\d.])[ \t]*\)?"
    r"|(?:/|\bout\s+of)\s*5(?![\d.])"
    r"|(?<![\d.])5[\s-]*points?\b"
    r"|(?<![\d.:=])(?<![:=] )[1-5]\s+means\b",  # an echoed definition: "1 means wrong, 5 fully correct"
    re.I,
)
# A stand-alone number: not glued to a word, a decimal point, a thousands comma or a slash; not the
# numerator of "4/10" or "4 out of 10" (another scale). A minus counts only when attached ("-1").
_NUMBER_RE = re.compile(
    r"(?:(?P<sign>(?<![\w)])[-−])|(?<![\w.,/]))(?P<num>\d+(?:\.\d+)?)"
    r"(?!\w|[.,]\d|\s*/\s*\d|\s*out\s+of\s+\d)",
    re.I,
)
# "3-4", "3 or 4", "3 to 4", "3/4": a range or a choice, not one score ("4 - 1 detail is missing" is a dash)
_ALTERNATIVE_RE = re.compile(r"(?:[-–—]|\s*/\s*|\s+(?:to|or)\s+)\d", re.I)
_FILLER = r"[\s*_#`'\"]*"  # markdown and quotes between a label and its score: "**Accuracy:** 4", "## Score\n4"
_GENERIC_LABELS = ("score", "rating", "grade")


def criterion_label(criterion: str) -> str:
    """The criterion's name as the form writes it ("- {name} (1-5):")."""
    return criterion.capitalize()


def _normalise(text: str) -> str:
    """Unicode digits ("４", Arabic-Indic "٤") to ASCII, compatibility forms ("：") folded;
    one character per character, so positions in the result are positions in `text`."""
    out = []
    for ch in text:
        digit = unicodedata.decimal(ch, None)
        if digit is not None:
            out.append(str(digit))
            continue
        folded = unicodedata.normalize("NFKC", ch)
        out.append(folded if len(folded) == 1 else ch)
    return "".join(out)


def _blank_scales(text: str) -> str:
    return _SCALE_RE.sub(lambda m: " " * len(m.group(0)), text)


def _label_re(label: str | None) -> re.Pattern:
    own = [label, label.replace("_", " ")] if label else []
    alternatives = []
    if own:
        alternatives.append("(?P<own>" + "|".join(re.escape(n) for n in dict.fromkeys(own)) + ")")
    alternatives.append("(?P<generic>" + "|".join(_GENERIC_LABELS) + ")")
    return re.compile(
        r"(?<!\w)(?:"
        + "|".join(alternatives)
        + r")(?!\w)"
        + _FILLER
        + r"(?:(?::|=|-|–|\bis\b|\bof\b)"
        + _FILLER
        + r"[\[(]?)?",
        re.I,
    )


def _value(match: re.Match) -> Fraction:
    value = Fraction(match["num"])
    return -value if match["sign"] else value


def _locate_score(text: str, label: str | None) -> re.Match | None:
    """The number the reply gives as its score (a `_NUMBER_RE` match on the normalised, scale-blanked
    text, positions as in `text`), else None. Rule: see `parse_score`."""
    clean = _blank_scales(_normalise(text or ""))
    own = generic = None
    for m in _label_re(label).finditer(clean):
        number = _NUMBER_RE.match(clean, m.end())
        if number is None:
            continue
        if m["generic"] is None:
            own = number
            break
        generic = generic or number
    number = own or generic
    if number is None:
        numbers = list(_NUMBER_RE.finditer(clean))
        if not numbers or len({_value(n) for n in numbers}) > 1:
            return None
        number = numbers[0]
    if _ALTERNATIVE_RE.match(clean, number.end()):
        return None
    return number


def _as_score(value: Fraction) -> int | None:
    return int(value) if value.denominator == 1 and 1 <= value <= 5 else None


def parse_score(text: str, label: str | None = None) -> int | None:
    """The judge's score in a reply: an integer 1..5, else None (missing).

    Rules, in order:
    1. Digits are normalised ("４", "٤" are 4) and scale descriptions are ignored: "(1-5)", "1-5",
       "1 to 5", "between 1 and 5", "/5", "out of 5", "5-point" never give the score, so an echoed
       form "- Accuracy (1-5): 4" is 4 and "Accuracy (1-5):" alone is None.
    2. The number right after the criterion `label` (e.g. "Accuracy") or after "score" / "rating" /
       "grade", with an optional ":", "=", "-", "is" or "of" and markdown between ("Score: 4",
       "**Accuracy:** 4", "## Score\\n4", "rating of 4"); the criterion's own label wins over the
       generic ones, the first occurrence over later ones.
    3. Without such a labelled number: the only number in the reply ("4", "I'd give it a 3.");
       different numbers without a label ("3 or 4", "2 facts, so 4") are ambiguous: None.
    The chosen number must be an integer from 1 to 5: "4.0" is 4, "3.5", "0", "6", "10", "-1" are
    None (never rounded or clipped); so is a range or a choice ("Score: 3-4", "3 or 4"), and a score
    on another scale ("4/10", "4 out of 10").
    """
    number = _locate_score(text, label)
    return _as_score(_value(number)) if number else None


def weighted_score(top_logprobs: dict[str, float], min_prob: float = 0.01) -> tuple[float | None, dict]:
    """G-Eval's score: sum_s s * p(s) / sum_s p(s) over score tokens s in 1..5 with p(s) >= min_prob.

    Tokens that differ only by surrounding whitespace (" 4", "4") are the same score; their
    probabilities add up. Returns (None, probs) when no score token is left.
    """
    probs: dict[str, float] = {}
    for token, logprob in top_logprobs.items():
        t = token.strip()
        if t in SCORES:
            probs[t] = probs.get(t, 0.0) + math.exp(logprob)
    probs = {t: p for t, p in probs.items() if p >= min_prob}
    total = sum(probs.values())
    if total <= 0:
        return None, probs
    return sum(int(t) * p for t, p in probs.items()) / total, probs


def score_position(positions, label: str | None = None) -> dict[str, float] | None:
    """The top logprobs where the judge writes its score.

    `positions` are (chosen token, top logprobs) per generated token. The tokens are joined into the
    reply, and the score is located as `parse_score` does (after the label, never inside "(1-5)" or
    "1 to 5"); its position is chosen when its token is a score digit ("4", " 4"). Otherwise the first
    position whose token is a score digit standing alone in the reply (not part of a scale
    description or of a longer number such as "10" or "4.5"); otherwise the first position.
    """
    positions = [(str(tok), top) for tok, top in positions]
    if not positions:
        return None
    starts, offset = [], 0
    for tok, _ in positions:
        starts.append(offset)
        offset += len(tok)
    text = "".join(tok for tok, _ in positions)
    clean = _blank_scales(_normalise(text))
    standalone = {}
    for m in _NUMBER_RE.finditer(clean):
        if _as_score(_value(m)) is not None and not m["sign"]:
            standalone[m.start("num")] = m
    digits = []  # (offset of the digit in the reply, position index)
    for i, (tok, _) in enumerate(positions):
        if tok.strip() in SCORES:
            at = starts[i] + len(tok) - len(tok.lstrip())
            if at in standalone and standalone[at]["num"].split(".")[0] == tok.strip():
                digits.append((at, i))
    located = _locate_score(text, label)
    for at, i in digits:
        if located is not None and located.start("num") == at:
            return positions[i][1]
    return positions[digits[0][1]][1] if digits else positions[0][1]


# ----------------------------------------------------------------------------- cache
class JudgeCache:
    """One JSON file per judgement under `root`, keyed by sha256(judge id, prompt, mode, sample)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = 0

    @staticmethod
    def key(judge_id: str, prompt: str, mode: str, sample: int) -> str:
        blob = json.dumps([judge_id, prompt, mode, sample], ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str, valid=None) -> dict | None:
        """The cached record, or None; a record that fails `valid` (written by an older version,
        lacking what this one needs) counts as a miss."""
        path = self._path(key)
        if not path.exists():
            return None
        record = read_json(path)
        if valid is not None and not valid(record):
            return None
        self.hits += 1
        return record

    def put(self, key: str, record: dict) -> None:
        write_json(self._path(key), record)


# ----------------------------------------------------------------------------- backends
@dataclass
class Counters:
    requests: int = 0  # calls that reached the judge
    transport_retries: int = 0  # timeouts / 5xx / connection errors retried
    parse_retries: int = 0  # unparseable replies re-asked
    errors: list[str] = field(default_factory=list)


class OpenAIJudge:
    """Any OpenAI-compatible chat-completions endpoint (vLLM server, OpenAI)."""

    deterministic_logprobs = False

    def __init__(self, params: dict, counters: Counters, sleep=time.sleep):
        import openai

        env = params.get("api_key_env") or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if not key and not params.get("base_url"):
            raise JudgeUnavailable(f"judge: set the API key in the environment variable {env}")
        self.model = params["model"]
        self.id = f"openai:{params.get('base_url') or 'api.openai.com'}:{self.model}"
        # max_retries=0: retries are ours, so they are bounded, counted and backed off as configured
        self.client = openai.OpenAI(
            api_key=key or "EMPTY", base_url=params.get("base_url"), timeout=float(params["timeout_s"]), max_retries=0
        )
        self.params, self.counters, self.sleep = params, counters, sleep
        self._retryable = (
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
            openai.RateLimitError,
        )

    def _create(self, prompt: str, **kwargs):
        for attempt in range(int(self.params["max_retries"]) + 1):
            try:
                self.counters.requests += 1
                return self.client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], **kwargs
                )
            except self._retryable as exc:
                reason = f"{type(exc).__name__}: {getattr(exc, 'status_code', '') or ''}".strip(": ")
                if attempt == int(self.params["max_retries"]):
                    self.counters.errors.append(reason)
                    raise JudgeUnavailable(reason) from None
                self.counters.transport_retries += 1
                self.sleep(float(self.params["backoff_s"]) * 2**attempt)

    def generate(self, prompt: str, temperature: float, seed: int, max_tokens: int, stop: str | None = None) -> str:
        extra = {"stop": [stop]} if stop else {}
        res = self._create(prompt, temperature=temperature, seed=seed, max_tokens=max_tokens, **extra)
        return (res.choices[0].message.content or "") if res.choices else ""

    def top_logprobs(self, prompts: list[str]) -> list[list[tuple[str, dict[str, float]]] | Exception]:
        out = []
        for prompt in prompts:
            try:
                res = self._create(
                    prompt,
                    temperature=0,
                    max_tokens=int(self.params["max_tokens"]),
                    logprobs=True,
                    top_logprobs=int(self.params["top_logprobs"]),
                )
                content = (res.choices[0].logprobs.content or []) if res.choices and res.choices[0].logprobs else []
                out.append([(c.token, {t.token: t.logprob for t in c.top_logprobs or []}) for c in content])
            except JudgeUnavailable as exc:
                out.append(exc)
        return out


class HFJudge:
    """A local transformers model as the judge (greedy logprobs are deterministic: no re-asks)."""

    deterministic_logprobs = True

    def __init__(self, params: dict, model_dir: str, counters: Counters, threads: int | None = None):
        from .modeling import default_device, load_model, load_tokenizer, set_threads

        set_threads(threads)
        self.tok = load_tokenizer(model_dir)
        self.model = load_model(model_dir, device=default_device())
        self.params, self.counters = params, counters
        try:  # the folder's manifest pins the weights: a different judge never shares cache entries
            pinned = read_json(Path(model_dir) / "manifest.json")
            pin = hashlib.sha256(
                json.dumps([pinned.get("params"), pinned.get("input_sha256")], sort_keys=True).encode()
            ).hexdigest()[:16]
        except FileNotFoundError:
            pin = "unpinned"
        self.id = f"hf:{params['model']}:{pin}"

    def _ids(self, prompt: str) -> list[int]:
        if self.params.get("chat_template"):
            text = self.tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tok(prompt)["input_ids"]
        room = int(self.params["max_length"]) - int(self.params["steps_max_tokens"])
        if len(ids) > room:
            raise ValueError(f"judge prompt of {len(ids)} tokens exceeds judge.max_length - steps_max_tokens = {room}")
        return ids

    def _generate(self, prompts: list[str], **kwargs):
        import torch

        from .generation import fp32_head, left_pad

        device = next(self.model.parameters()).device
        ids, mask = left_pad([self._ids(p) for p in prompts], self.tok.pad_token_id, device)
        self.counters.requests += len(prompts)
        # the score tokens' logprobs in fp32 even for a model sharded in bf16 (see fp32_head)
        with torch.inference_mode(), fp32_head(self.model):
            gen = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                pad_token_id=self.tok.pad_token_id,
                eos_token_id=self.tok.eos_token_id,
                **kwargs,
            )
        return ids.shape[1], gen

    def generate(self, prompt: str, temperature: float, seed: int, max_tokens: int) -> str:
        import torch

        torch.manual_seed(seed)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
            if temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        width, gen = self._generate([prompt], max_new_tokens=max_tokens, **sampling)
        return self.tok.decode(gen[0, width:], skip_special_tokens=True)

    def top_logprobs(self, prompts: list[str]) -> list[list[tuple[str, dict[str, float]]]]:
        import torch

        out = []
        k = int(self.params["top_logprobs"])
        bs = int(self.params["batch_size"])
        for start in range(0, len(prompts), bs):
            batch = prompts[start : start + bs]
            width, res = self._generate(
                batch,
                max_new_tokens=int(self.params["max_tokens"]),
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                return_dict_in_generate=True,
                output_logits=True,
            )
            logprobs = torch.log_softmax(torch.stack(res.logits, dim=1).float(), dim=-1)  # (B, T, V)
            for row in range(len(batch)):
                positions = []
                for t in range(logprobs.shape[1]):
                    chosen = int(res.sequences[row, width + t])
                    if chosen == self.tok.pad_token_id and t > 0:
                        break
                    vals, idx = logprobs[row, t].topk(k)
                    top: dict[str, float] = {}
                    for v, i in zip(vals.tolist(), idx.tolist()):
                        tok = self.tok.decode([i])
                        top[tok] = float(np.logaddexp(top[tok], v)) if tok in top else v
                    positions.append((self.tok.decode([chosen]), top))
                out.append(positions)
        return out


def api_generate(spec: dict, prompts: list[str], max_new_tokens: int, stop: str | None, log=print) -> list[str]:
    """An API model (OpenAI-compatible) as an un-fine-tuned generator, e.g. GPT-4 as the RAG
    baseline: greedy (temperature 0, fixed seed) answers, each cached on disk like a judgement
    (keyed by endpoint, model, prompt, length and stop), so a rerun or a resumed job asks nothing
    twice. An answer the endpoint never gives after every retry fails the job (nothing is
    written; the cached answers stay for the rerun) instead of scoring as an empty answer."""
    counters = Counters()
    backend = OpenAIJudge({**spec, "model": spec["name"]}, counters)
    cache = JudgeCache(spec["cache_dir"])
    out = []
    for prompt in prompts:
        key = cache.key(backend.id, prompt, f"generate:{max_new_tokens}:{stop!r}", 0)
        record = cache.get(key)
        if record is None:
            text = backend.generate(prompt, temperature=0.0, seed=0, max_tokens=max_new_tokens, stop=stop)
            record = {"text": text}
            cache.put(key, record)
        text = record["text"]
        out.append((text.split(stop)[0] if stop else text).strip())
    log(f"api {backend.id}: {counters.requests} requests, {cache.hits} cached, {counters.transport_retries} retries")
    return out


def make_backend(params: dict, counters: Counters, model_dir: str | None = None, threads: int | None = None):
    if params["backend"] == "openai":
        return OpenAIJudge(params, counters)
    if params["backend"] == "hf":
        if not model_dir:
            raise ValueError("judge backend hf needs the judge model folder")
        return HFJudge(params, model_dir, counters, threads)
    raise ValueError(f"unknown judge backend {params['backend']!r}")


# ----------------------------------------------------------------------------- evaluation steps
def tidy_steps(text: str, max_lines: int) -> str:
    """Generated steps without repeated lines, at most `max_lines` (small judges loop)."""
    seen, lines = set(), []
    for line in (ln.strip() for ln in text.splitlines()):
        key = re.sub(r"[\s:.]+$", "", re.sub(r"^[\s\d.)\-*]+", "", line)).lower()
        if line and key not in seen:
            seen.add(key)
            lines.append(line)
    return "\n".join(lines[:max_lines])


def write_steps(params: dict, backend, out: str, cache: JudgeCache, log=print) -> dict:
    """Evaluation steps per criterion: pinned in the config, or written once by the judge (greedy)
    and stored here; every judging job reads this file, so all runs use the same steps."""
    steps = {}
    for name, definition in params["criteria"].items():
        if params.get("steps", {}).get(name):
            steps[name] = {"definition": definition, "steps": params["steps"][name].strip(), "source": "pinned"}
            continue
        prompt = params["steps_prompt"].format(definition=definition)
        key = cache.key(backend.id, prompt, "steps", 0)
        record = cache.get(key)
        if record is None:
            text = backend.generate(prompt, temperature=0.0, seed=0, max_tokens=int(params["steps_max_tokens"]))
            if not text.strip():
                raise JudgeUnavailable(f"judge wrote empty evaluation steps for {name!r}; pin them in judge.steps")
            record = {"text": text.strip(), "prompt": prompt}
            cache.put(key, record)
        steps[name] = {
            "definition": definition,
            "steps": tidy_steps(record["text"], int(params["steps_max_lines"])),
            "raw": record["text"],
            "source": "generated",
        }
        log(f"steps for {name}:\n{record['text']}")
    result = {"judge": backend.id, "criteria": steps, "manifest": manifest("judge-steps", params)}
    write_json(out, result)
    return result


# ----------------------------------------------------------------------------- judging
def form_prompt(params: dict, criterion: str, steps: dict, item: dict) -> str:
    return params["form_prompt"].format(
        definition=steps[criterion]["definition"],
        steps=steps[criterion]["steps"],
        question=item["question"],
        reference=" / ".join(item["references"]),
        answer=item["prediction"] or "(no answer)",
        name=criterion_label(criterion),
    )


def _seed(key: str, attempt: int) -> int:
    return int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:8], 16)


def _logprob_attempts(record: dict) -> bool:
    """A cached logprobs record this version can re-score: every attempt keeps its positions."""
    attempts = record.get("attempts")
    return isinstance(attempts, list) and bool(attempts) and all("positions" in a for a in attempts)


def _score_logprobs(attempts: list[dict], label: str | None, min_prob: float) -> dict:
    """Score the first attempt whose score position holds score tokens (the one a run stops at)."""
    for attempt in attempts:
        top = score_position(attempt["positions"], label)
        score, probs = weighted_score(top or {}, min_prob)
        if score is not None:
            break
    return {
        "attempts": attempts,
        "reply": attempt["reply"],
        "top": top,
        "score": score,
        "probs": probs,
        "status": "ok" if score is not None else "unparseable",
    }


def _ask_logprobs(
    backend, params, cache, prompts: list[str], counters: Counters, label: str | None = None
) -> list[dict]:
    """Logprob-weighted scores for many prompts; cached ones are not asked again.

    The cache keeps every attempt's generated tokens with their top logprobs, so the score position
    (`score_position`, for the criterion `label`) and the score are chosen again on every read: a
    changed parser or `min_prob` needs no new requests. A cached record that the current parser finds
    no score in is asked again only for the attempts it has left (`parse_retries`), exactly as a fresh
    run would. Records of older versions without the positions are asked again.
    """
    keys = [cache.key(backend.id, p, "logprobs", 0) for p in prompts]
    cached = [cache.get(k, valid=_logprob_attempts) for k in keys]
    attempts: list[list[dict]] = [list(r["attempts"]) if r else [] for r in cached]
    min_prob = float(params["min_prob"])
    retries = 0 if backend.deterministic_logprobs else int(params["parse_retries"])

    def unscored(i: int) -> bool:
        return not attempts[i] or _score_logprobs(attempts[i], label, min_prob)["score"] is None

    todo = [i for i in range(len(prompts)) if unscored(i) and len(attempts[i]) <= retries]
    asked, unavailable = set(todo), {}
    while todo:
        counters.parse_retries += sum(1 for i in todo if attempts[i])
        replies = backend.top_logprobs([prompts[i] for i in todo])
        for i, reply in zip(todo, replies):
            if isinstance(reply, Exception):
                unavailable[i] = str(reply)
                continue
            attempts[i].append(
                {"reply": "".join(tok for tok, _ in reply), "positions": [[tok, top] for tok, top in reply]}
            )
        todo = [i for i in todo if i not in unavailable and unscored(i) and len(attempts[i]) <= retries]
    out = []
    for i in range(len(prompts)):
        if i in unavailable:  # not cached: the next run asks again
            out.append({"top": None, "score": None, "status": "unavailable", "error": unavailable[i]})
            continue
        record = _score_logprobs(attempts[i], label, min_prob)
        if i in asked:
            cache.put(keys[i], {"attempts": attempts[i], "status": record["status"]})
        out.append(record)
    return out


def _score_samples(attempts: list[dict], label: str | None) -> dict:
    """Parse every reply again; the score is the first reply that has one (the one a run stops at)."""
    attempts = [{"reply": a["reply"], "score": parse_score(a["reply"], label)} for a in attempts]
    score = next((a["score"] for a in attempts if a["score"] is not None), None)
    return {"score": score, "status": "ok" if score is not None else "unparseable", "attempts": attempts}


def _ask_sample(backend, params, cache, prompt: str, sample: int, counters: Counters, label: str | None = None) -> dict:
    """One sampled judgement. The cache keeps the raw replies and the score is parsed again on every
    read (for the criterion `label`), so a parser change needs no new requests; a cached record in
    which the current parser finds no score is asked again only for the attempts it has left."""
    key = cache.key(backend.id, prompt, "sample", sample)
    record = cache.get(key, valid=lambda r: isinstance(r.get("attempts"), list) and bool(r["attempts"]))
    attempts = [{"reply": a["reply"]} for a in record["attempts"]] if record else []
    retries = int(params["parse_retries"])
    if attempts:
        result = _score_samples(attempts, label)
        if result["score"] is not None or len(attempts) > retries:
            return result
    try:
        for attempt in range(len(attempts), retries + 1):
            if attempt:
                counters.parse_retries += 1
            text = backend.generate(
                prompt,
                temperature=float(params["temperature"]),
                seed=_seed(key, attempt),
                max_tokens=int(params["max_tokens"]),
            )
            attempts.append({"reply": text})
            if parse_score(text, label) is not None:
                break
    except JudgeUnavailable as exc:
        return {
            "score": None,
            "status": "unavailable",
            "error": str(exc),
            "attempts": _score_samples(attempts, label)["attempts"],
        }
    result = _score_samples(attempts, label)
    cache.put(key, result)
    return result


def krippendorff_alpha(matrix: np.ndarray) -> float | None:
    """Ordinal Krippendorff's alpha of (repeats x items) scores, NaN = missing; None if undefined."""
    import krippendorff

    usable = np.sum(~np.isnan(matrix), axis=0) >= 2
    if matrix.shape[0] < 2 or usable.sum() < 2 or len(np.unique(matrix[:, usable][~np.isnan(matrix[:, usable])])) < 2:
        return None
    return float(
        krippendorff.alpha(
            reliability_data=matrix[:, usable], level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]
        )
    )


def load_items(predictions: str, examples: str) -> list[dict]:
    """The answers to judge: predictions.jsonl joined with the questions of the test split."""
    from .data import load_examples

    questions = {ex["id"]: ex["inputs"]["question"] for ex in load_examples(examples, "test")}
    items = []
    with open(predictions, encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["id"] not in questions:
                raise ValueError(f"{predictions}: example {row['id']!r} is not in the test split of {examples}")
            items.append(
                {
                    "id": row["id"],
                    "question": questions[row["id"]],
                    "prediction": row["prediction"],
                    "references": row["references"],
                    "scores": row.get("scores", {}),
                }
            )
    return items


def judge_cell(
    params: dict,
    items: list[dict],
    steps_file: str,
    backend,
    cache: JudgeCache,
    counters: Counters,
    out_jsonl: str,
    out_json: str,
    cell: dict | None = None,
    inputs: dict | None = None,
    log=print,
) -> dict:
    """Judge every item on every criterion; write per-item judgements and a summary with counts."""
    steps = read_json(steps_file)["criteria"]
    n_samples = int(params["samples"])
    use_logprobs = params["score"] == "logprobs"
    if not use_logprobs and n_samples == 0:
        raise ValueError("judge.score: samples needs judge.samples >= 1")
    rows = {(it["id"], c): {"id": it["id"], "criterion": c} for it in items for c in params["criteria"]}
    summary: dict[str, Any] = {"cell": cell, "judge": backend.id, "n_items": len(items), "criteria": {}}
    start = time.time()
    for c in params["criteria"]:
        prompts = [form_prompt(params, c, steps, it) for it in items]
        label = criterion_label(c)  # the form's "- {name} (1-5):", which judges echo
        lp = _ask_logprobs(backend, params, cache, prompts, counters, label) if use_logprobs else [None] * len(items)
        matrix = np.full((n_samples, len(items)), np.nan)
        for j, (it, prompt) in enumerate(zip(items, prompts)):
            row = rows[(it["id"], c)]
            if lp[j] is not None:
                row.update(logprob_score=lp[j]["score"], logprob_status=lp[j]["status"], probs=lp[j].get("probs"))
            samples = [_ask_sample(backend, params, cache, prompt, s, counters, label) for s in range(n_samples)]
            for s, rec in enumerate(samples):
                if rec["score"] is not None:
                    matrix[s, j] = rec["score"]
            scored = [r["score"] for r in samples if r["score"] is not None]
            row.update(
                samples=[r["score"] for r in samples],
                sample_status=[r["status"] for r in samples],
                sample_mean=float(np.mean(scored)) if scored else None,
                sample_sd=float(np.std(scored, ddof=1)) if len(scored) > 1 else None,
            )
            row["score"] = row.get("logprob_score") if params["score"] == "logprobs" else row["sample_mean"]
        per = [rows[(it["id"], c)] for it in items]
        lp_scores = [r.get("logprob_score") for r in per if r.get("logprob_score") is not None]
        means = [r["sample_mean"] for r in per if r["sample_mean"] is not None]
        sds = [r["sample_sd"] for r in per if r["sample_sd"] is not None]
        summary["criteria"][c] = {
            "score": _mean([r["score"] for r in per if r["score"] is not None]),
            "missing": sum(r["score"] is None for r in per),
            "logprob_score": _mean(lp_scores),
            "logprob_missing": sum(1 for r in per if "logprob_score" in r and r["logprob_score"] is None),
            "sample_score": _mean(means),
            "samples_missing": int(np.isnan(matrix).sum()),
            "items_without_samples": sum(1 for r in per if n_samples and r["sample_mean"] is None),
            "sample_sd_mean": _mean(sds),
            "krippendorff_alpha": krippendorff_alpha(matrix) if n_samples > 1 else None,
        }
    summary["counts"] = {
        "requests": counters.requests,
        "cache_hits": cache.hits,
        "transport_retries": counters.transport_retries,
        "parse_retries": counters.parse_retries,
        "unavailable": sum(r.get("logprob_status") == "unavailable" for r in rows.values())
        + sum(s == "unavailable" for r in rows.values() for s in r.get("sample_status", [])),
        "errors": sorted(set(counters.errors)),
    }
    summary["wall_time_s"] = round(time.time() - start, 2)
    summary["manifest"] = manifest("judge", params, inputs={"steps": steps_file, **(inputs or {})})
    with atomic_file(out_jsonl) as fh:
        for r in rows.values():
            fh.write(json.dumps(r) + "\n")
    write_json(out_json, summary)
    log(json.dumps({k: v for k, v in summary.items() if k != "manifest"}))
    return summary


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def run_judge_steps(
    *, spec: Json, steps: Output, cache: Folder, model: OptionalInput = None, threads: Threads = None, log=print
) -> dict:
    """Write the evaluation steps once per study: every judging job reads the same file."""
    counters = Counters()
    backend = make_backend(spec, counters, model, threads)
    return write_steps(spec, backend, steps, JudgeCache(cache), log=log)


def run_judge(
    *,
    spec: Json,
    predictions: Input,
    examples: Input,
    steps: Input,
    judgements: Output,
    summary: Output,
    cache: Folder,
    cell: JudgedCell,
    model: OptionalInput = None,
    threads: Threads = None,
    log=print,
) -> dict:
    """Judge one eval cell's answers (`cell`: model, tag, dataset) with steps written by this same judge."""
    name, tag, dataset = cell
    counters = Counters()
    backend = make_backend(spec, counters, model, threads)
    steps_judge = read_json(steps)["judge"]
    if steps_judge != backend.id:
        raise ValueError(f"{steps} was written for judge {steps_judge!r}, this judge is {backend.id!r}")
    return judge_cell(
        spec,
        load_items(predictions, examples),
        steps,
        backend,
        JudgeCache(cache),
        counters,
        judgements,
        summary,
        cell={"model": name, "model_tag": tag, "dataset": dataset},
        log=log,
        inputs={"predictions": predictions, "examples": examples},
    )
