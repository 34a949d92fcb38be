"""Launch decisions (processes, torchrun, srun) and SLURM site resources, without a cluster."""

from __future__ import annotations

import sys

import pytest

from ftgen.launch import launch_command
from helpers import smoke_study

STEP = ["finetune", "--finetuned", "a b"]


def test_one_process_runs_in_place():
    assert launch_command(STEP, None, 1, gpus=0, env={}) == [sys.executable, "-m", "ftgen", *STEP]
    assert launch_command(STEP, None, 1, gpus=1, env={}) == [sys.executable, "-m", "ftgen", *STEP]


def test_one_torchrun_process_per_visible_gpu_or_forced_count():
    argv = launch_command(STEP, None, 1, gpus=8, env={})
    assert argv[1:5] == ["-m", "torch.distributed.run", "--nproc_per_node", "8"] and "--standalone" in argv
    assert argv[-len(STEP) - 2 :] == ["-m", "ftgen", *STEP]
    assert launch_command(STEP, 2, 1, gpus=0, env={})[4] == "2"  # 2 CPU processes (gloo)


def test_several_nodes_use_srun_and_a_rendezvous_at_the_first_host():
    argv = launch_command(STEP, None, 2, gpus=8, env={"SLURM_JOB_ID": "42"})
    assert argv[:4] == ["srun", "--overlap", "--nodes=2", "--ntasks-per-node=1"]
    inner = argv[-1]
    assert "--nnodes 2" in inner and "--nproc_per_node 8" in inner and "--rdzv_id 42" in inner
    assert "scontrol show hostnames" in inner and "'a b'" in inner  # arguments stay quoted
    with pytest.raises(RuntimeError, match="SLURM"):
        launch_command(STEP, None, 2, gpus=8, env={})


def test_site_resources_from_config_and_environment():
    study = smoke_study()
    assert study.slurm_resources("finetune", env={}) == {}
    study.slurm = {"partition": "cpu", "gpu_partition": "gpu", "account": "proj"}
    study.resources = {"finetune": {"gpu": 8, "cpus_per_gpu": 6}, "evaluate": {"gpu": 1}}
    assert study.slurm_resources("finetune", env={}) == {
        "slurm_partition": "gpu",
        "slurm_account": "proj",
        "cpus_per_gpu": 6,
    }
    assert study.slurm_resources("prepare", env={}) == {"slurm_partition": "cpu", "slurm_account": "proj"}
    env = {"FTGEN_SLURM_PARTITION": "short", "FTGEN_SLURM_QOS": "high", "FTGEN_SLURM_GPU_PARTITION": "a100"}
    assert study.slurm_resources("evaluate", env=env) == {
        "slurm_partition": "a100",
        "slurm_account": "proj",
        "qos": "high",
    }
    assert study.slurm_resources("aggregate", env=env)["slurm_partition"] == "short"
    assert study.group_resources("finetune")["nodes"] == 1 and study.group_resources("finetune")["procs"] == 0
