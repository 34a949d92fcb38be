"""The smoke study on a real SLURM cluster (localhost, 8 fake GPUs) through `snakemake --profile slurm`.

The profile is installed exactly as the README says (a link in $XDG_CONFIG_HOME/snakemake),
with XDG_CONFIG_HOME pointed at a temporary folder. Site settings come from the environment
(FTGEN_SLURM_PARTITION), GPU counts from the study config. Evidence is read back from SLURM's
own accounting (`sacct`), not from Snakemake. Marked `slurm`: CI runs it as its own step, with
FTGEN_REQUIRE_SLURM=1 so that a machine without SLURM fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ftgen.study import Study, load_yaml
from ftgen.study.resources import RULE_GROUP
from helpers import COPY, REPO, SNAKEMAKE, planned_jobs, write_study

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
from local_cluster import LocalSlurm, alive, missing_requirements  # noqa: E402

pytestmark = pytest.mark.slurm
R = Path("results/slurm_smoke")
GPUS = {"finetune": 2, "evaluate": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = missing_requirements()
    if why:
        if os.environ.get("FTGEN_REQUIRE_SLURM"):
            pytest.fail(f"FTGEN_REQUIRE_SLURM is set but {why}")
        pytest.skip(why)
    c = LocalSlurm(tmp_path_factory.mktemp("slurm")).up()
    yield c
    daemons = list(c.started)
    c.down()
    assert daemons and not [(name, pid) for name, pid in daemons if alive(pid)], daemons


def readme_install_line() -> str:
    lines = [
        line.strip()
        for line in (REPO / "README.md").read_text().splitlines()
        if "ln -sfn" in line and "profiles/slurm" in line
    ]
    assert len(lines) == 1, f"README must show exactly one profile install line, found {lines}"
    return lines[0]


def test_install_line_is_idempotent(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    for _ in range(2):
        subprocess.run(["bash", "-c", readme_install_line()], cwd=REPO, env=env, check=True)
    link = tmp_path / "xdg" / "snakemake" / "slurm"
    assert link.is_symlink() and (link / "config.yaml").resolve() == (REPO / "profiles/slurm/config.yaml").resolve()


def private_repo(wd: Path) -> Path:
    for item in COPY + ["README.md"]:
        (wd / item).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-r", str(REPO / item), str(wd / item)], check=True)
    return wd


def run_profile(wd: Path, xdg: Path, cluster, *args: str) -> tuple[int, str]:
    """`snakemake --profile slurm ...` as a user runs it (profile installed by the README line)."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(xdg),
        "FTGEN_SLURM_PARTITION": cluster.partition,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(["bash", "-c", readme_install_line()], cwd=wd, env=env, check=True)
    # the user's command (its submission rate included), plus the test's targets/config and a
    # faster status poll than a site wants
    cmd = [
        SNAKEMAKE,
        "--profile",
        "slurm",
        *args,
        "--verbose",
        "--slurm-init-seconds-before-status-checks",
        "3",
        "--seconds-between-status-checks",
        "3",
        "--max-status-checks-per-second",
        "1",
        "--latency-wait",
        "10",
    ]
    proc = subprocess.run(["timeout", "-s", "INT", "1200", *cmd], cwd=wd, env=env, capture_output=True, text=True)
    (wd / "snakemake-slurm.log").write_text(proc.stdout + proc.stderr)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    wd = private_repo(tmp_path_factory.mktemp("repo"))

    def mutate(cfg):
        cfg["study"] = "slurm_smoke"
        cfg["resources"] = {
            "default": {"mem_mb": 1000, "runtime": 10},
            "finetune": {"gpu": GPUS["finetune"], "threads": 1, "mem_mb": 2000, "runtime": 10},
            "evaluate": {"gpu": GPUS["evaluate"], "threads": 1, "mem_mb": 2000, "runtime": 10},
        }

    study = write_study(wd, "slurm_smoke.yaml", mutate)
    expected = planned_jobs(wd, "--configfile", study)
    rc, log = run_profile(wd, tmp_path_factory.mktemp("xdg"), cluster, "--configfile", study)
    assert rc == 0, log[-8000:]
    return wd, log, expected


def sacct_jobs(since: str = "now-3hours") -> list[dict]:
    out = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-S", since, "-o", "JobID,State,AllocTRES,Partition,Comment%300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [dict(zip(["id", "state", "tres", "partition", "comment"], line.split("|", 4))) for line in out.splitlines()]
    assert rows and all(r["comment"].startswith("rule_") for r in rows), out[:3000]
    return rows


def by_rule(jobs: list[dict]) -> dict[str, list[dict]]:
    """sacct rows by rule; a group job of eval cells (comment rule_eval.<model>.<tag>) is `evaluate`."""
    out: dict[str, list[dict]] = {}
    for job in jobs:
        rule = "evaluate" if job["comment"].startswith("rule_eval.") else None
        rule = rule or re.match(r"rule_([a-z0-9_]+?)(_wildcards_|$)", job["comment"])[1]
        out.setdefault(rule, []).append(job)
    return out


def expected_submissions(wd: Path, results: Path, planned: dict[str, int]) -> dict[str, int]:
    """One SLURM job per planned job, but one per model tag for the eval cells (profiles/slurm:
    group-components), and none for the rules that run locally."""
    tags = {p.parents[2] for p in (wd / results / "eval").glob("*/*/*/*/scores.json")}  # <model>/<tag>/
    out = {r: n for r, n in planned.items() if r not in {"fetch_asset", "all"}}
    return {**out, "evaluate": len(tags)} if "evaluate" in out else out


def model_servers(wd: Path, results: Path) -> set[str]:
    """The model servers the eval cells' jobs used (each job's log names its server's socket)."""
    logs = (wd / results / "logs" / "evaluate").rglob("*.log")
    return {m[1] for log in logs for m in re.finditer(r"^model server (\S+)$", log.read_text(), re.M)}


def test_every_job_ran_under_slurm_with_its_gpus(slurm_run):
    wd, log, expected = slurm_run
    jobs = by_rule(sacct_jobs())
    assert {r: len(j) for r, j in jobs.items()} == expected_submissions(wd, R, expected)
    tags = len(jobs["evaluate"])
    assert tags < expected["evaluate"] and len(model_servers(wd, R)) == tags  # one model load per tag
    for rule, rows in jobs.items():
        for job in rows:
            assert job["state"] == "COMPLETED", job
            assert job["partition"] == "debug", job  # from FTGEN_SLURM_PARTITION
            gpus = re.search(r"gres/gpu=(\d+)", job["tres"])
            assert (int(gpus[1]) if gpus else 0) == GPUS.get(rule, 0), (rule, job)
    # the sbatch calls in Snakemake's log carry the GPU requests of the training rule
    calls = [line for line in log.splitlines() if "sbatch call:" in line]
    assert any("rule_finetune" in c and f"--gpus={GPUS['finetune']}" in c for c in calls), calls[:3]
    assert not any("rule_prepare_dataset" in c and "--gpus" in c for c in calls)
    # inside the job, the launcher saw the GPUs SLURM bound to it
    ft_logs = list((wd / R / "logs" / "finetune").rglob("*.log"))
    assert ft_logs
    for path in ft_logs:
        m = re.search(r"CUDA_VISIBLE_DEVICES='([0-9,]*)' SLURM_JOB_ID='(\d+)'", path.read_text())
        assert m and len(m[1].split(",")) == GPUS["finetune"], path.read_text()[:2000]


def test_outputs_are_complete(slurm_run):
    wd, _, _ = slurm_run
    for name in ("transfer.csv", "transfer.parquet", "transfer.md", "transfer.manifest.json"):
        assert (wd / R / "tables" / name).stat().st_size > 0
    assert len(list((wd / R / "plots").glob("*.png"))) == 6
    dry = subprocess.run(
        [SNAKEMAKE, "-n", "--configfile", "config/studies/slurm_smoke.yaml"], cwd=wd, capture_output=True, text=True
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_requeued_finetune_resumes_from_its_checkpoint(cluster, tmp_path):
    """SLURM requeues a running fine-tune (as on preemption or node failure): the job is killed
    and restarted by SLURM, resumes from the newest complete checkpoint and finishes."""
    wd = private_repo(tmp_path / "repo")
    ft = "sent_food.sft.f0.n12.s0"
    steps = 3000

    def mutate(cfg):
        cfg["study"] = "slurm_requeue"
        cfg["finetune"]["train_on"] = ["sent_food"]
        cfg["finetune"]["recipe"].update({"max_steps": steps, "save_steps": 100})
        cfg["resources"] = {"finetune": {"gpu": 1, "threads": 1, "mem_mb": 2000, "runtime": 30}}

    study = write_study(wd, "requeue.yaml", mutate)
    ckpt = wd / "results/slurm_requeue/checkpoints/tiny" / ft
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(
            run_profile,
            wd,
            tmp_path / "xdg",
            cluster,
            f"results/slurm_requeue/finetuned/tiny/{ft}",
            "--configfile",
            study,
        )
        deadline = time.time() + 600
        while not list(ckpt.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline and not run.done():
            time.sleep(0.2)
        running = [
            line.split()[0]
            for line in subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True
            ).stdout.splitlines()
            if "rule_finetune" in line
        ]
        assert len(running) == 1, f"no running fine-tune with a checkpoint to requeue: {running}"
        subprocess.run(["scontrol", "requeue", running[0]], check=True)
        rc, log = run.result()
    assert rc == 0, log[-6000:]
    history = subprocess.run(
        ["sacct", "-D", "-X", "-P", "-n", "-S", since, "-j", running[0], "-o", "State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert history[0] == "REQUEUED" and history[-1] == "COMPLETED", history
    manifest = json.loads((wd / "results/slurm_requeue/finetuned/tiny" / ft / "manifest.json").read_text())
    assert manifest["resumed_from"] and manifest["global_steps"] == steps, manifest


# ----------------------------------------------------------------------------- a GPU config's rehearsal
REHEARSED = "gupta2025"  # the GPU study rehearsed under SLURM (the others: tests/workflow/test_rehearsal.py)


@pytest.fixture(scope="module")
def slurm_rehearsal(cluster, tmp_path_factory):
    """`snakemake --profile slurm --configfile config/studies/gupta2025.yaml --config
    rehearsal=true`: the study's whole DAG as SLURM jobs, asking for the study's own GPU counts."""
    wd = private_repo(tmp_path_factory.mktemp("rehearsal"))
    args = ("--configfile", f"config/studies/{REHEARSED}.yaml", "--config", "rehearsal=true")
    expected = planned_jobs(wd, *args)
    since = time.strftime("%Y-%m-%dT%H:%M:%S")
    rc, log = run_profile(wd, tmp_path_factory.mktemp("xdg"), cluster, *args)
    assert rc == 0, log[-8000:]
    return wd, expected, since


def test_rehearsal_runs_under_slurm_with_the_study_gpus(slurm_rehearsal):
    wd, expected, since = slurm_rehearsal
    study = Study(load_yaml(wd / "config" / "studies" / f"{REHEARSED}.yaml"))  # the real study's requests
    results = Path("results") / "rehearsal" / REHEARSED
    jobs = by_rule(sacct_jobs(since))
    assert {r: len(j) for r, j in jobs.items()} == expected_submissions(wd, results, expected)
    assert len(model_servers(wd, results)) == len(jobs["evaluate"])
    for rule, rows in jobs.items():
        want = study.group_resources(RULE_GROUP[rule])["gpu"]  # finetune 8, evaluate 1, as on the cluster
        for job in rows:
            assert job["state"] == "COMPLETED", job
            gpus = re.search(r"gres/gpu=(\d+)", job["tres"])
            assert (int(gpus[1]) if gpus else 0) == want, (rule, job)
    assert (wd / "results" / "rehearsal" / REHEARSED / "tables" / "s3ft.md").stat().st_size > 0
