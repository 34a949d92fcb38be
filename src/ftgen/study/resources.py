"""What each rule asks a cluster for: its group's resources (config `resources:`) and the site's
SLURM settings. Resources, unlike params, never trigger reruns."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .schema import deep_merge, with_defaults

SLURM_ENV = {
    "partition": "FTGEN_SLURM_PARTITION",
    "gpu_partition": "FTGEN_SLURM_GPU_PARTITION",
    "account": "FTGEN_SLURM_ACCOUNT",
    "qos": "FTGEN_SLURM_QOS",
}

# rule -> its resource group (a key of the config's `resources:`), and the resources it declares
# besides mem_mb and runtime: GPUs where a job can use them, nodes and processes for training
RULE_GROUP = {
    "preflight": "prepare",
    "prepare_model": "prepare",
    "prepare_dataset": "prepare",
    "build_corpus": "prepare",
    "tokenize": "tokenize",
    "finetune": "finetune",
    "evaluate": "evaluate",
    "self_answers": "evaluate",
    "s3ft_dataset": "evaluate",
    "index": "retrieval",
    "retrieve": "retrieval",
    "judge_steps": "judge",
    "judge": "judge",
    "aggregate": "aggregate",
    "plots": "aggregate",
    "rag_report": "aggregate",
    "rag_plot": "aggregate",
    "s3ft_report": "aggregate",
    "compute_table": "aggregate",
}
GROUP_EXTRA = {
    "finetune": ("gpu", "nodes", "procs", "cpu_allocator"),
    "evaluate": ("gpu",),
    "retrieval": ("gpu",),
    "judge": ("gpu",),
}


class RuleResources:
    """Mixed into `Study`: `resources_for(rule)` is a rule's whole `resources:` dict."""

    def group_resources(self, group: str) -> dict:
        """`resources.default`, then the group's own, over the schema's defaults."""
        merged = deep_merge(self.resources.get("default", {}), self.resources.get(group, {}))
        return with_defaults(merged, definition="resources")

    def threads_for(self, rule: str) -> int:
        return self.group_resources(RULE_GROUP[rule])["threads"]

    def resources_for(self, rule: str, env: Mapping[str, str] | None = None) -> dict:
        """mem_mb, runtime (minutes; training asks attempt x runtime, after a TIMEOUT; an eval
        cell: cell_runtime), GPUs / nodes / processes where the rule uses them, and the site's SLURM settings."""
        group = RULE_GROUP[rule]
        res = self.group_resources(group)
        out = {**self.slurm_resources(group, env), "mem_mb": res["mem_mb"], "runtime": res["runtime"]}
        if group == "finetune":
            out["runtime"] = lambda wildcards, attempt: res["runtime"] * attempt
        out.update({key: res[key] for key in GROUP_EXTRA.get(group, ())})
        if rule == "evaluate":
            # a cluster group job holds the cells of one model tag and one model server; the
            # profile grants each group job one slot (`resources: eval_slots=1`, scope local), so
            # its cells run one after another and it asks SLURM for one cell's GPUs and memory
            # and the sum of the cells' runtimes
            out["runtime"] = res.get("cell_runtime") or res["runtime"]
            out["eval_slots"] = 1
        return out

    def slurm_resources(self, group: str, env: Mapping[str, str] | None = None) -> dict:
        """Site settings as the resources the SLURM executor reads; only those that are set.

        The environment (FTGEN_SLURM_*) wins over the study's `slurm:` section, so one study
        file runs at any site.
        """
        env = os.environ if env is None else env
        site = {key: env.get(var) or self.slurm.get(key) for key, var in SLURM_ENV.items()}
        res = self.group_resources(group)
        out = {}
        partition = site["gpu_partition"] if res["gpu"] > 0 and site["gpu_partition"] else site["partition"]
        if partition:
            out["slurm_partition"] = partition
        if site["account"]:
            out["slurm_account"] = site["account"]
        if site["qos"]:
            out["qos"] = site["qos"]
        if res["gpu"] > 0 and res.get("cpus_per_gpu"):
            out["cpus_per_gpu"] = res["cpus_per_gpu"]
        return out
