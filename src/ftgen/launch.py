"""Launch a pipeline step on every device a job was given: one process, torchrun, or srun+torchrun.

The fine-tune rule calls `python -m ftgen launch [--procs N] [--nodes M] -- finetune ...`. The
number of processes is decided here, at run time, from what the scheduler actually allocated
(CUDA devices visible to this job), not from what the config asked for, so the same rule works
on a laptop, on a SLURM node with 8 GPUs, and across nodes. `--procs` forces a count (several
CPU processes with gloo, as the DeepSpeed tests do). torchrun rather than the `deepspeed`
launcher: the latter rewrites CUDA_VISIBLE_DEVICES, which breaks SLURM's GPU binding.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from typing import Annotated

from .allocator import SETTINGS, allocator_env
from .step import Arg, Int


def visible_gpus() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def launch_command(
    step_argv: list[str], procs: int | None, nodes: int, gpus: int, env: Mapping[str, str], rdzv_port: int = 29500
) -> list[str]:
    """The argv that runs `python -m ftgen <step_argv>` on `procs` (default: `gpus` or 1) per node.

    One process on one node runs in place (no torchrun: nothing to rendezvous). Several nodes
    need `srun` to start one torchrun per node; they meet at the first node of the allocation.
    """
    per_node = procs or max(gpus, 1)
    module = [sys.executable, "-m", "ftgen", *step_argv]
    if nodes <= 1 and per_node == 1:
        return module
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(per_node)]
    if nodes <= 1:
        return [*torchrun, "--standalone", "-m", "ftgen", *step_argv]
    if "SLURM_JOB_ID" not in env:
        raise RuntimeError(f"nodes={nodes} needs a SLURM allocation (srun); run the job under SLURM")
    # torchrun's own flags are shell-expanded on each node by srun's shell, not here
    head = '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
    inner = " ".join(
        [
            *map(shlex.quote, torchrun),
            "--nnodes",
            str(nodes),
            "--rdzv_backend",
            "c10d",
            "--rdzv_id",
            shlex.quote(env["SLURM_JOB_ID"]),
            "--rdzv_endpoint",
            f"{head}:{rdzv_port}",
            "-m",
            "ftgen",
            *map(shlex.quote, step_argv),
        ]
    )
    # --overlap: the job step Snakemake runs in already holds the allocation's CPUs
    return ["srun", "--overlap", f"--nodes={nodes}", "--ntasks-per-node=1", "bash", "-c", inner]


def launch(
    *,
    procs: Int = 0,
    nodes: Int = 1,
    cpu_allocator: Annotated[str, Arg("value", choices=SETTINGS)] = "auto",
    step_argv: Annotated[list[str], Arg("rest")],
    log=print,
) -> None:
    """Replace this process with the launch command (exit status and signals pass through).

    `procs` 0: one process per visible GPU, or 1. `cpu_allocator`: the malloc the step's processes
    preload (ftgen.allocator; config `resources.finetune.cpu_allocator`). `step_argv`: everything
    after `--`.
    """
    step_argv = step_argv[1:] if step_argv[:1] == ["--"] else step_argv
    if not step_argv:
        raise SystemExit("ftgen launch: give the step to run after --")
    gpus = visible_gpus()
    env, allocator = allocator_env(cpu_allocator, gpus, os.environ, field="resources.finetune.cpu_allocator")
    argv = launch_command(step_argv, procs, nodes, gpus, env)
    log(
        f"launch: nodes={nodes} gpus_visible={gpus} procs_per_node={procs or max(gpus, 1)} "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r} "
        f"SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID', '')!r}"
    )
    log(f"launch: malloc: {allocator}")
    log("launch: " + shlex.join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, env)
