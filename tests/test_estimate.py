"""`ftgen estimate`: its CPU predictions against the per-rule times measured on CPU
(benchmarks/out/*_time.json, Snakemake benchmark files of full runs), its plan against the
study's (jobs, grouped submissions), and its memory model against ZeRO's partitioning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftgen import compute, estimate
from ftgen.compute import model_shape
from ftgen.study import REPO_ROOT, Study, load_studies, load_yaml
from helpers import load_gpu_check

MEASURED = {  # study config -> per-rule times measured on a 2-core CPU, each cell its own process
    "config/config.yaml": "default_time.json",
    "config/studies/yang2024-cpu.yaml": "yang2024_cpu_time.json",
    "config/studies/gupta2025-cpu.yaml": "gupta2025_cpu_time.json",
    "config/studies/barnett2024-cpu.yaml": "barnett2024_cpu_time.json",
}
RULE_OF = {"finetune": "finetune", "evaluate": "evaluate", "self_answers (S3FT)": "self_answers"}


def study(path: str) -> Study:
    return Study(load_yaml(REPO_ROOT / path), source=path)


def cli_estimate(configfile: str, *args: str) -> str:
    cmd = [sys.executable, "-m", "ftgen", "estimate", "--configfile", configfile, *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("configfile", list(MEASURED))
def test_cpu_prediction_is_within_2x_of_the_measured_rule_times(configfile):
    measured = json.loads((estimate.BENCH / MEASURED[configfile]).read_text())["rules"]
    # measured on the bf16 CPU the default calibration comes from, every cell its own process
    rows, _ = estimate.estimate_study(study(configfile), "cpu", server=False, tokenized=False)
    assert {r.rule for r in rows} >= {"finetune", "evaluate"}
    for row in rows:
        truth = measured[RULE_OF[row.rule]]
        ratio = row.wall_s / truth["total_s"]
        print(
            f"{configfile} {row.rule}: predicted {row.wall_s:.0f} s, measured {truth['total_s']:.0f} s ({ratio:.2f}x)"
        )
        assert 0.5 <= ratio <= 2.0
        if configfile == "config/config.yaml":  # its runs planned every job (the other files: partial reruns)
            assert row.jobs == truth["jobs"]


GRID = [str(REPO_ROOT / "benchmarks/config" / name) for name in ("throughput_offline.yaml", "eval_grid_offline.yaml")]


@pytest.mark.parametrize(
    "server, measured",
    [(True, "eval_grid_offline_time_server_concurrent.json"), (False, "eval_grid_offline_time_no_server.json")],
)
def test_fp32_cpu_prediction_of_evaluation_is_within_2x_of_the_offline_grid(server, measured):
    """The fp32 calibration (evaluation benchmarks on an AVX2-only EPYC, benchmarks/cpu_speed.py)
    against full Snakemake runs of 72 cells on the same kind of CPU: with model servers and with a
    process per cell. (Its fine-tunes are predicted at 1.75-2.3x their time from TASK_TOKENS, at
    0.95-1.25x from their tokenized examples, which results/ holds only where the grid has run:
    docs/hpc.md.)"""
    truth = json.loads((estimate.BENCH / measured).read_text())["rules"]["evaluate"]
    calib = estimate.cpu_calibration(bf16=False)
    assert calib.matmul_flops and not calib.bf16
    (grid,) = load_studies(GRID)
    rows, inputs = estimate.estimate_study(grid, "cpu", calib, server=server, tokenized=False)
    row = next(r for r in rows if r.rule == "evaluate")
    ratio = row.wall_s / truth["total_s"]
    print(f"server={server} evaluate: predicted {row.wall_s:.0f} s, measured {truth['total_s']} s ({ratio:.2f}x)")
    assert 0.5 <= ratio <= 2.0 and row.jobs == truth["jobs"] == 72
    assert ("a model server per model" if server else "a process per cell") in inputs[-1]


def test_training_tokens_counted_by_the_tokenize_step_replace_the_task_defaults(tmp_path):
    """After `snakemake --until tokenize`, a fine-tune is costed at its tokenized examples' mean
    length (stats.json as ftgen.tokenized writes it), the others at TASK_TOKENS."""
    overlay = tmp_path / "results_here.yaml"
    overlay.write_text(f"results_dir: {json.dumps(str(tmp_path))}\n")
    (grid,) = load_studies([*GRID, str(overlay)])
    calib = estimate.cpu_calibration(bf16=False)
    before, inputs = estimate.estimate_study(grid, "cpu", calib)
    assert "counted by their tokenize step" not in inputs[1]
    ft = grid.finetunes[0]
    stats = {"examples": ft.size, "tokens": 50 * ft.size, "mean_length": 50.0, "max_length": 60}
    folder = Path(grid.paths.tokenized("smollm2", ft.dataset, ft.variant, ft.format))
    assert folder.is_relative_to(tmp_path)
    folder.mkdir(parents=True)
    (folder / "stats.json").write_text(json.dumps({"train": stats, "dev": dict(stats, examples=0, tokens=0)}))
    after, inputs = estimate.estimate_study(grid, "cpu", calib)
    assert "training tokens of 1 of 5 fine-tunes counted by their tokenize step" in inputs[1]
    shape, recipe = estimate.SMOLLM2, grid.recipe(ft)
    body, target = estimate.tokens_of(grid, ft.dataset)
    default = (body + target) * (1 + estimate.demos_of(ft.variant))
    speed = estimate.CpuSpeed(calib)

    def seconds(length):
        flops = ft.size * recipe["epochs"] * length * compute.train_flops_per_token(shape, length, lora=True)
        return speed.train_s(flops, 1, False)

    assert after[0].wall_s - before[0].wall_s == pytest.approx(seconds(50) - seconds(default))


def test_a_cpu_twice_as_fast_at_matmuls_halves_the_compute():
    calib = estimate.cpu_calibration(bf16=False)
    base = estimate.CpuSpeed(calib)
    fast = estimate.CpuSpeed(calib, local={part: 2 * flops for part, flops in calib.matmul_flops.items()})
    assert fast.train_s(1e15, 1, False) == pytest.approx(base.train_s(1e15, 1, False) / 2)
    assert fast.forward_s(1e12) == pytest.approx(base.forward_s(1e12) / 2)
    assert "scaled to this CPU" in fast.inputs() and "2.00x" in fast.inputs()
    # the bf16 calibration recorded no matmul rate: a local one cannot scale it, and it says so
    bf16 = estimate.CpuSpeed(estimate.cpu_calibration(bf16=True), local={"train": 1e12, "eval": 1e12})
    assert bf16.scale == {"train": 1.0, "eval": 1.0} and "not scaled" in bf16.inputs()


def test_the_cpu_cli_measures_this_cpu_and_uses_the_calibration_of_its_precision():
    from ftgen.modeling import resolve_bf16

    out = cli_estimate("config/config.yaml", "--device", "cpu")
    assert "| evaluate | 40 | 40 |" in out and "a model server per model" in out
    bf16 = resolve_bf16("auto", "cpu")
    assert ("CPU speeds (bf16" if bf16 else "CPU speeds (fp32") in out
    assert ("not scaled" if bf16 else "scaled to this CPU's measured matmul rate") in out


def test_yang2024_bill_matches_the_plan_and_the_cli_prints_it():
    rows, inputs = estimate.estimate_study(study("config/studies/yang2024.yaml"), "a100")
    by_rule = {r.rule: r for r in rows}
    assert by_rule["finetune"].jobs == by_rule["finetune"].submissions == 45
    # one SLURM job per model tag (tests/workflow/test_plans.py counts the same from the DAG)
    assert by_rule["evaluate"].jobs == 6624 and by_rule["evaluate"].submissions == 46
    assert all(r.device_hours > 0 and r.memory_gb < 80 for r in rows)  # fits an A100 80GB
    assert any("312 TFLOP/s" in line for line in inputs)
    out = cli_estimate("config/studies/yang2024.yaml")
    assert "| evaluate | 6,624 | 46 |" in out and "Inputs:" in out


def test_model_states_follow_zero_partitioning():
    shape = model_shape(estimate.KNOWN_MODELS["meta-llama/Llama-2-7b-hf"])
    n = shape.params
    assert estimate.model_states(shape, lora=False, devices=8, deepspeed=None) == 16 * n
    assert estimate.model_states(shape, False, 8, "config/deepspeed/zero3.json") == pytest.approx(16 * n / 8)
    assert estimate.model_states(shape, False, 8, "config/deepspeed/zero2.json") == pytest.approx(2 * n + 14 * n / 8)
    assert estimate.model_states(shape, False, 8, "config/deepspeed/zero3_offload.json") == pytest.approx(4 * n / 8)


def write_check(
    folder: Path, device: str, created: str, train_mfu: float, scoring_mfu: float | None = None, mode="gpu"
):
    """A result in benchmarks/gpu_check.py's layout, under the name it gives it."""
    configs = {
        "lora_padded": {"method": "lora", "layout": "padded", "mfu": train_mfu / 2},
        "full_padded": {"method": "full", "layout": "padded", "mfu": train_mfu * 0.7},
        "full_packed_rows2048": {"method": "full", "layout": "packed", "mfu": train_mfu},
    }
    parts = {"train": {"configs": configs}, "eval": {"loglikelihoods": {"mfu": scoring_mfu} if scoring_mfu else {}}}
    name = load_gpu_check().result_name(device) if mode == "gpu" else "gpu_check_cpu"
    data = {"mode": mode, "device": device, "created": created, "parts": parts}
    (folder / f"{name}.json").write_text(json.dumps(data))
    return name


def test_a_gpu_check_of_the_device_kind_replaces_the_assumed_mfu(tmp_path):
    assumed = estimate.GPU_EFFICIENCY
    eff, source = estimate.gpu_efficiency("h100", tmp_path)
    assert eff == assumed and "assumed" in source
    assert write_check(tmp_path, "NVIDIA H100 80GB HBM3", "2026-12-01 10:00:00 UTC", 0.41, 0.5) == (
        "gpu_check_nvidia_h100_80gb_hbm3"
    )
    write_check(tmp_path, "NVIDIA A100-SXM4-40GB", "2026-12-01 10:00:00 UTC", 0.3)
    write_check(tmp_path, "NVIDIA GH200 480GB", "2026-12-03 10:00:00 UTC", 0.6, 0.6)  # not an H200 node
    write_check(tmp_path, "Intel(R) Xeon(R) Processor (2 threads)", "2026-12-03 10:00:00 UTC", 0.01, 0.01, mode="cpu")

    eff, source = estimate.gpu_efficiency("h100", tmp_path)
    assert (eff["train_mfu"], eff["forward_mfu"]) == (0.41, 0.5)  # the packed full fine-tune's; scoring's
    assert eff["decode_bandwidth"] == assumed["decode_bandwidth"]
    assert "gpu_check_nvidia_h100_80gb_hbm3.json on NVIDIA H100 80GB HBM3" in source
    eff, source = estimate.gpu_efficiency("a100", tmp_path)  # an SXM4 40 GB check counts for the A100 kind
    assert eff["train_mfu"] == 0.3 and eff["forward_mfu"] == assumed["forward_mfu"] and "A100-SXM4-40GB" in source
    write_check(tmp_path, "NVIDIA A100 80GB PCIe", "2026-12-02 10:00:00 UTC", 0.33)
    assert estimate.gpu_efficiency("a100", tmp_path)[0]["train_mfu"] == 0.33  # the newest of the kind
    eff, source = estimate.gpu_efficiency("h200", tmp_path)
    assert eff == assumed and "assumed" in source
