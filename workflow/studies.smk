# Several studies in one DAG: one `snakemake` run (one SLURM queue) for every study file listed
# under `studies:` (config/hpc.yaml):
#   snakemake --profile slurm --configfile config/hpc.yaml
#   snakemake --profile slurm yang2024_all --configfile config/hpc.yaml   # one of them
# Each study file is imported as a module of the Snakefile with that file as its config, so a
# study plans exactly the jobs it plans alone, under results/<study>/, its rules renamed
# <study>_<rule> (yang2024_finetune, ..., yang2024_all). `all` asks for every study's targets.
#
# The one output studies share is the pinned-asset cache (`cache_dir`, data/cache/pypi/): two
# rules that make one file are ambiguous, so only the first study listed with a given cache
# keeps its fetch_asset; it fetches that cache's assets for every study, which must then pin
# them alike (checked below).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
# strict YAML: a duplicate key or a syntax error is reported with file:line
from ftgen.study import load_yaml  # noqa: E402


def load_study(path):
    study = load_yaml(path)
    if not isinstance(study.get("study"), str):
        raise ValueError(
            f"{path}: no `study:` name (listed under `studies:` in the config)"
        )
    # common.smk names this file in its messages; `_source` is not a study key; a rehearsal
    # (`--config rehearsal=true`) rehearses every study
    rehearsal = {"rehearsal": config["rehearsal"]} if "rehearsal" in config else {}
    return {**study, **rehearsal, "_source": str(path)}


if not isinstance(config["studies"], list) or not config["studies"]:
    raise ValueError("config: `studies:` must be a list of study files")
STUDIES = {}  # study name -> its config
CACHE_OWNER = {}  # cache_dir -> the study whose fetch_asset fills it
for path in config["studies"]:
    study = load_study(path)
    name = study["study"]
    if name in STUDIES or name in globals():
        raise ValueError(
            f"{path}: study name {name!r} is listed twice or clashes with a workflow name"
        )
    STUDIES[name] = study
    CACHE_OWNER.setdefault(str(Path(study.get("cache_dir", "data/cache"))), name)


for study_name, rule_prefix in ((s, f"{s}_") for s in STUDIES):

    module:
        name: study_name
        snakefile:
            "../Snakefile"
        config:
            STUDIES[study_name]

    if study_name in CACHE_OWNER.values():

        use rule * from study_name as rule_prefix*

    else:

        use rule * from study_name exclude fetch_asset as rule_prefix*


def check_shared_assets():
    """A study whose cache another study fetches must pin every asset as that study does."""
    for name in STUDIES:
        study = globals()[name].STUDY  # the module's namespace
        owner = CACHE_OWNER[str(study.cache_dir)]
        fetched = {a["filename"]: a for a in globals()[owner].STUDY.assets.values()}
        for asset, spec in study.assets.items():
            if fetched.get(spec["filename"]) != spec:
                raise ValueError(
                    f"{study.source}: asset {asset!r} ({spec['filename']}) is not pinned as in "
                    f"study {owner!r}, whose fetch_asset fills {study.cache_dir}/pypi/ for both"
                )


check_shared_assets()


def all_targets():
    """The Snakefile's `all`: every study's targets (its <study>_all rule's input)."""
    return [getattr(rules, f"{name}_all").input for name in STUDIES]
