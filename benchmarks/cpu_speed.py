"""This CPU's evaluation speeds, as `ftgen estimate` needs them, from offline data only.

    python benchmarks/cpu_speed.py --label epyc_avx2     # = --n 64 --n-gen 24 --threads 1 --repeat 3

What `ftgen.estimate.CpuCalibration` reads besides training (`train_throughput.py`): the job
start (python + torch/transformers/peft imports, in a fresh process), the model load (in a fresh
process), an evaluate job's client start (model server mode), scoring
(`evaluate_cell` on VADER movie snippets, the default study's sentiment prompt, 0-shot) and greedy
generation (`greedy_generate`, 32 new tokens for each of the same prompts, no stop string), at the
precision `bf16: auto` picks here and the evaluate jobs' thread count; plus this CPU's matmul
rate at that precision (`ftgen.compute.cpu_matmul_rate`), so that `ftgen estimate` can scale these
speeds to another CPU of the same precision. Fastest of `--repeat` runs.
Writes benchmarks/out/cpu_speed[_<label>].{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchio import write_results  # benchmarks/benchio.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
STUDY = "benchmarks/config/throughput_offline.yaml"  # its data step builds VADER movies offline
IMPORTS = "import torch, transformers, peft; from transformers import AutoModelForCausalLM"


def fastest(fn, repeat: int) -> tuple[float, list[float]]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return min(runs), [round(r, 3) for r in runs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="examples scored")
    ap.add_argument("--n-gen", type=int, default=24, help="prompts generated from")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (evaluate jobs run with 1)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--label", default="")
    args = ap.parse_args()

    start_s, start_runs = fastest(lambda: subprocess.run([sys.executable, "-c", IMPORTS], check=True), args.repeat)
    # an evaluate job that hands its cell to a model server imports none of them
    client = [sys.executable, "-m", "ftgen", "evaluate", "--help"]
    client_s, client_runs = fastest(lambda: subprocess.run(client, check=True, capture_output=True), args.repeat)

    import torch

    import eval_vs_lmeval as bench
    from ftgen.compute import cpu_flags, cpu_matmul_rate, cpu_name
    from ftgen.generation import greedy_generate
    from ftgen.modeling import load_model, load_tokenizer, resolve_bf16

    torch.set_num_threads(args.threads)
    bf16 = resolve_bf16("auto", "cpu")
    # measured as `ftgen estimate` measures the CPU it runs on
    matmul_flops, probes, side = cpu_matmul_rate(args.threads, bf16)
    model_dir = bench.find_model_dir()
    # in a fresh process, as a job or model server loads it (a second load in one process is ~20x faster)
    timed_load = (
        "import sys, time; from ftgen.modeling import load_model; start = time.perf_counter(); "
        "load_model(sys.argv[1]); print(time.perf_counter() - start)"
    )
    load_runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", timed_load, str(model_dir)], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(args.repeat)
    ]
    load_s, load_runs = min(load_runs), [round(r, 3) for r in load_runs]
    weights_gb = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 1e9
    tok, model = load_tokenizer(model_dir), load_model(model_dir)
    study = bench.study_for(STUDY)
    params = bench.eval_params(study, "vader_movies", 16, 0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        examples = bench.pooled_examples(study, "vader_movies", max(args.n, args.n_gen), tmp / "examples.parquet")
        # the prompt text evaluate_cell scores, chat template and all (eval_vs_lmeval.project_prompts)
        prompts = [
            tok(d["prompt"], add_special_tokens=False)["input_ids"]
            for d in bench.project_prompts(tok, params, examples)
        ]
        prompt_tokens = [len(p) for p in prompts[: args.n]]

        def score():
            bench.run_project(model, tok, model_dir, examples, params, bf16, tmp, args.threads, limit=args.n)

        score()  # warm-up: oneDNN kernels, the shared prefix
        score_s, score_runs = fastest(score, args.repeat)
    gen_prompts = prompts[: args.n_gen]
    new_tokens = 32
    gen_s, gen_runs = fastest(
        lambda: greedy_generate(model, tok, gen_prompts, new_tokens, 16, bf16, stop=None), args.repeat
    )
    data = {
        "command": "python benchmarks/cpu_speed.py " + " ".join(sys.argv[1:]),
        "device": f"CPU: {cpu_name()}",
        "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "torch": torch.__version__,
        "threads": args.threads,
        "bf16": bf16,
        "matmul_flops": round(matmul_flops),
        "matmul_side": side,
        "matmul_probes": [round(p) for p in probes],
        "job_start_s": round(start_s, 3),
        "job_start_runs_s": start_runs,
        "client_start_s": round(client_s, 3),
        "client_start_runs_s": client_runs,
        "load_s": round(load_s, 3),
        "load_runs_s": load_runs,
        "weights_gb": round(weights_gb, 3),
        "scoring": {
            "dataset": "vader_movies",
            "n": args.n,
            "mean_prompt_tokens": round(statistics.mean(prompt_tokens), 1),
            "wall_s": round(score_s, 3),
            "runs_s": score_runs,
        },
        "generation": {
            "n": len(gen_prompts),
            "mean_prompt_tokens": round(statistics.mean(map(len, gen_prompts)), 1),
            "new_tokens": new_tokens,
            "batch_size": 16,
            "wall_s": round(gen_s, 3),
            "runs_s": gen_runs,
        },
    }
    s, g = data["scoring"], data["generation"]
    md = "\n".join(
        [
            f"# This CPU's evaluation speeds for `ftgen estimate` ({data['device']})",
            "",
            f"`{data['command']}`: {args.threads} thread(s), {'bf16' if bf16 else 'fp32'} "
            f"(`bf16: auto`), CPU flags {', '.join(data['cpu_flags'])}, torch {torch.__version__}; "
            f"fastest of {args.repeat}.",
            "",
            "| what | s | runs s |",
            "|---|---|---|",
            f"| job start (`{IMPORTS}`, a fresh process) | {start_s:.2f} | {start_runs} |",
            f"| an evaluate job's client (`python -m ftgen evaluate --help`) | {client_s:.2f} | {client_runs} |",
            f"| model load (SmolLM2-135M, {weights_gb:.2f} GB) | {load_s:.2f} | {load_runs} |",
            f"| scoring {s['n']} VADER movie prompts (mean {s['mean_prompt_tokens']} tokens), 2 labels, batch 16 "
            f"| {score_s:.2f} | {score_runs} |",
            f"| generating {new_tokens} tokens for {g['n']} prompts (mean {g['mean_prompt_tokens']} tokens), "
            f"batch 16 | {gen_s:.2f} | {gen_runs} |",
            "",
            f"Matmul rate at that precision and thread count: {matmul_flops / 1e9:.0f} GFLOP/s (median of 3 probes, "
            f"{side}^3: {', '.join(f'{p / 1e9:.0f}' for p in probes)}).",
            "",
        ]
    )
    write_results("cpu_speed" + (f"_{args.label}" if args.label else ""), data, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
