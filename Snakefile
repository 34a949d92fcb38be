# Studies of how fine-tuning changes an LLM's generalization.
#   snakemake --cores 2                                   # the default study (config/config.yaml)
#   snakemake --cores 2 --configfile config/studies/X.yaml  # another study
#   snakemake -n --configfile config/hpc.yaml             # several studies, one DAG
import atexit
import gc

from snakemake.utils import min_version

min_version("9.0")

# Planning keeps every object it makes (hundreds of thousands for the HPC studies), and with
# Python's default GC thresholds full collections rerun over an ever larger heap while the DAG is
# built, and once more over all of it at exit (benchmarks/plan_time.py; benchmarks/out/plan_time.md).
# So: young collections every 100,000 allocations instead of 700 (as mypy does; cyclic garbage is
# still collected), and the heap is frozen at exit, which that last pass then skips (the OS frees
# the memory; Python never promised __del__ at exit). Jobs run in processes of their own.
# (workflow/studies.smk runs this file once per study: repeating both is harmless.)
gc.set_threshold(100_000, 20, 20)
atexit.register(gc.freeze)


# A --configfile replaces the default study instead of being merged into it.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# A config with a `studies:` list (config/hpc.yaml) imports this Snakefile once per listed
# study file, as a module (workflow/studies.smk); any other config is one study.
include: "workflow/studies.smk" if "studies" in config else "workflow/study.smk"


rule all:
    default_target: True
    input:
        all_targets(),  # workflow/study.smk (one study) or workflow/studies.smk (several)
