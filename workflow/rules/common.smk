import shlex
import sys
from pathlib import Path

# The rules run `python -m ftgen` from the active environment: make the package importable
# without installing it (the conda envs in envs/ carry only its dependencies).
SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:  # once per study when workflow/studies.smk imports several
    sys.path.insert(0, SRC)
shell.prefix(f"export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

from ftgen.report import PLOTS  # noqa: E402
from ftgen.study import Study, as_json, load_yaml, wildcard_constraints  # noqa: E402

# Snakemake parses the config files itself and keeps the last of a key written twice: the strict
# loader re-reads them (and a study file that config/hpc.yaml lists), so a duplicate key stops
# the run here, with file and line, before anything is planned.
for configfile in [
    *workflow.configfiles,
    *([config["_source"]] if config.get("_source") else []),
]:
    load_yaml(configfile)

# A study imported by workflow/studies.smk names its own file under `_source` (not a study key).
CONFIG_SOURCE = config.get("_source") or ", ".join(
    str(p) for p in workflow.config_settings.configfiles or ["config/config.yaml"]
)
STUDY = Study({k: v for k, v in config.items() if k != "_source"}, source=CONFIG_SOURCE)
PATHS = STUDY.paths
ML_ENV = "../../envs/ml.yaml"
DATA_ENV = "../../envs/data.yaml"
PLOT_ENV = "../../envs/plot.yaml"


wildcard_constraints:
    **wildcard_constraints(),


# An eval cell's wildcards, and as a path (the logs and benchmarks of the per-cell rules)
CELL_WILDCARDS = ("{model}", "{model_tag}", "{dataset}", "{format}", "{shots}")
CELL = PATHS.cell(*CELL_WILDCARDS)
# the cluster job the evaluate cells of one model tag share (profiles/slurm: group-components)
EVAL_GROUP = "eval.{model}.{model_tag}"
