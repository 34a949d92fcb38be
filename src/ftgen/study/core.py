"""`Study`: a study file + the shared registries -> one resolved, validated study.

The raw config is validated against config/schema/config.schema.yaml, merged with the
registries (assets, tasks, dataset catalog, judge defaults), completed with the schema's
defaults and checked section by section (`checks`). What the study runs is in `plan`, where
its artifacts live in `paths`, what each rule receives in `params`, and what each rule asks a
cluster for in `resources`.
"""

from __future__ import annotations

import copy
from functools import cached_property
from pathlib import Path

from ..step import InputFiles
from .checks import check_output_dir, check_study
from .params import ParamSlices
from .paths import Paths
from .plan import BASE, EvalCell, FineTune
from .rehearsal import rehearse, rehearse_assets, rehearse_dataset, rehearse_task, thin_scope
from .resources import RuleResources
from .schema import REGISTRY_DIR, ConfigError, deep_merge, load_yaml, validate_schema, with_defaults
from .targets import RuleInputs


class Study(ParamSlices, RuleResources, RuleInputs):
    """A resolved study: registries merged, defaults filled, references checked, jobs enumerated.

    Sections a rule receives whole are passed as written (`written`: a model, each dataset's
    `source`, a corpus, `finetune.recipe`): their params carry what the user wrote, so a default filled in here never
    reruns a finished job; the step fills its own slice's defaults (`schema.with_defaults`).
    """

    def __init__(self, config: dict, source: str = "config", registry_dir: Path = REGISTRY_DIR):
        validate_schema(config, "config.schema.yaml", source)
        self.rehearsal = config.get("rehearsal") in (True, "true")  # `--config rehearsal=true` is a string
        if self.rehearsal:  # the same study on CPU, fixtures and tiny models (study/rehearsal.py)
            config = rehearse(config)
            validate_schema(config, "config.schema.yaml", f"{source} (rehearsal)")
        self.written = config
        self.config = with_defaults(config)
        self.source = source
        self.name: str = config["study"]
        self.results_dir = Path(check_output_dir(self.config["results_dir"], f"{source}: results_dir")) / self.name
        self.cache_dir = Path(check_output_dir(self.config["cache_dir"], f"{source}: cache_dir"))
        self.paths = Paths(self.results_dir, self.cache_dir)
        self.assets = deep_merge(load_yaml(registry_dir / "assets.yaml"), config.get("assets", {}))
        if self.rehearsal:
            self.assets = rehearse_assets(self.assets)
        self.tasks = deep_merge(load_yaml(registry_dir / "tasks.yaml"), config.get("tasks", {}))
        if self.rehearsal:
            self.tasks = {name: rehearse_task(task) for name, task in self.tasks.items()}
        for task in self.tasks.values():  # YAML reads `0:` as an int key; JSON params need str
            if isinstance(task, dict) and isinstance(task.get("prompts"), dict):
                task["prompts"] = {str(k): v for k, v in task["prompts"].items()}
        # `model` names one base model or a list (e.g. two generators in the RAG study)
        self.model_names: list[str] = [config["model"]] if isinstance(config["model"], str) else list(config["model"])
        self.model_name: str = self.model_names[0]
        self.models: dict = self.config["models"]
        self.finetune: dict = self.config["finetune"]
        self.evaluate: dict = self.config["evaluate"]
        self.resources: dict = self.config.get("resources", {})
        self.slurm: dict = self.config.get("slurm", {})
        self.rag: dict = self.config.get("rag") or {}
        self.s3ft: dict = self.config.get("s3ft") or {}
        self.judge: dict = self._judge(registry_dir)
        self.datasets: dict[str, dict] = self._datasets(registry_dir)
        if self.rehearsal:
            self.evaluate = self.config["evaluate"] = thin_scope(
                self.evaluate, self.datasets, self.finetune["train_on"]
            )
        check_study(self)

    def _judge(self, registry_dir: Path) -> dict:
        if not self.written.get("judge"):
            return {}
        defaults = load_yaml(registry_dir / "judge.yaml")  # they obey the study's judge schema
        validate_schema(defaults, "config.schema.yaml", str(registry_dir / "judge.yaml"), definition="judge")
        return deep_merge(defaults, self.written["judge"])

    def _datasets(self, registry_dir: Path) -> dict[str, dict]:
        """The study's datasets: catalog entries completed or overridden by the study's own."""
        catalog = load_yaml(registry_dir / "datasets.yaml")
        datasets = {}
        for name, spec in self.written["datasets"].items():
            spec = spec or {}
            if name not in catalog and not spec.get("source"):
                raise ConfigError(
                    f"{self.source}: datasets.{name}: not in config/registry/datasets.yaml and no `source` given"
                )
            if name in catalog:  # the catalog entries a study uses obey the same schema as its own
                validate_schema(
                    catalog[name],
                    "config.schema.yaml",
                    str(registry_dir / "datasets.yaml"),
                    definition="dataset",
                    required=("task", "source"),
                    prefix=f"datasets.{name}",
                )
            # a study's `source` replaces the catalog's (a hub copy of a dataset shares no adapter keys)
            merged = deep_merge(catalog.get(name, {}), {k: v for k, v in spec.items() if k != "source"})
            if spec.get("source"):
                merged["source"] = copy.deepcopy(spec["source"])
            merged["split"] = deep_merge(self.written["split"], merged.get("split", {}))
            datasets[name] = rehearse_dataset(merged) if self.rehearsal else merged
        return datasets

    # ------------------------------------------------------------------ lookups
    def task_of(self, dataset: str) -> dict:
        return self.tasks[self.datasets[dataset]["task"]]

    def labels_of(self, dataset: str) -> list[str] | None:
        """The label set: the dataset's own `labels` (a 2-way set inside a 3-way task, e.g. RTE)
        or its task's."""
        return self.datasets[dataset].get("labels") or self.task_of(dataset).get("labels")

    def is_api(self, model: str) -> bool:
        return self.models[model]["source"] == "api"

    @property
    def eval_datasets(self) -> list[str]:
        chosen = self.evaluate["datasets"]
        return list(self.datasets) if chosen == "all" else list(chosen)

    @property
    def rag_datasets(self) -> list[str]:
        return [d for d, ds in self.datasets.items() if ds["source"]["adapter"] == "rag"]

    @property
    def study_tasks(self) -> set[str]:
        return {ds["task"] for ds in self.datasets.values()}

    def shots_for(self, dataset: str) -> list[int]:
        """Evaluation shot counts: per task (`evaluate.shots_by_task`) or the study default."""
        return self.evaluate.get("shots_by_task", {}).get(self.datasets[dataset]["task"], self.evaluate["shots"])

    def variants_for(self, dataset: str) -> list[str]:
        """Training variants: per task (`finetune.variants_by_task`) or the study default."""
        return self.finetune.get("variants_by_task", {}).get(self.datasets[dataset]["task"], self.finetune["variants"])

    def sizes_for(self, dataset: str) -> list[int]:
        """Training-set sizes: per training dataset (`finetune.sizes_by_dataset`) or the study's."""
        return self.finetune.get("sizes_by_dataset", {}).get(dataset, self.finetune["sizes"])

    def retriever_for(self, corpus: str) -> str:
        """The retriever whose top-k passages the generator reads (per corpus, else `rag.retriever`)."""
        return self.rag["corpora"][corpus].get("retriever") or self.rag["retriever"]

    @property
    def s3ft_train_on(self) -> list[str]:
        return [d for d in self.finetune["train_on"] if "s3ft" in self.variants_for(d)]

    # ------------------------------------------------------------------ the plan
    @cached_property
    def finetunes(self) -> list[FineTune]:
        ft = self.finetune
        return [
            FineTune(d, v, ft["format"], n, s)
            for d in ft["train_on"]
            for v in self.variants_for(d)
            for n in self.sizes_for(d)
            for s in ft["seeds"]
        ]

    @property
    def model_tags(self) -> list[str]:
        return [BASE] + [f.id for f in self.finetunes]

    @cached_property
    def eval_cells(self) -> list[EvalCell]:
        """Every (model tag, dataset, format, shots) to score; with `evaluate.scope: in_domain` a
        fine-tuned model is scored only on the dataset it was trained on (the base on all)."""
        in_domain = self.evaluate["scope"] == "in_domain"
        general = set(self.evaluate["general"])  # benchmarks every model is scored on
        trained_on = {f.id: f.dataset for f in self.finetunes}
        return [
            EvalCell(tag, d, fmt, k)
            for tag in self.model_tags
            for d in self.eval_datasets
            if not (in_domain and tag != BASE and trained_on[tag] != d and d not in general)
            for fmt in self.evaluate["formats"]
            for k in self.shots_for(d)
        ]

    def cells_for(self, model: str) -> list[EvalCell]:
        """The cells a model is scored in: an API model only as itself (it is never fine-tuned)."""
        return [c for c in self.eval_cells if c.model_tag == BASE or not self.is_api(model)]

    def cell_paths(self, path_of, datasets: set[str] | None = None) -> list[str]:
        """`path_of` (e.g. `paths.scores`) of every eval cell of every model (of `datasets` only)."""
        return [
            path_of(m, c.model_tag, c.dataset, c.format, c.shots)
            for m in self.model_names
            for c in self.cells_for(m)
            if datasets is None or c.dataset in datasets
        ]

    # ------------------------------------------------------------------ files a rule reads
    def asset_path(self, name: str) -> str:
        return self.paths.asset(self.assets[name]["filename"])

    def asset_named(self, filename: str) -> tuple[str, dict]:
        for name, spec in self.assets.items():
            if spec["filename"] == filename:
                return name, spec
        raise ValueError(f"no asset with filename {filename!r} in the registry")

    @staticmethod
    def local_sources(source: dict) -> list[str]:
        """The local files a dataset / corpus source reads (a JSONL, CSV or parquet `path`; RAG
        `passages` / `questions`; an hf `name` that is a saved folder, file by file): inputs of
        their rule, so editing one reruns from there."""
        files = [source[k] for k in ("path", "passages", "questions") if isinstance(source.get(k), str)]
        name = source.get("name") if source.get("adapter") == "hf" else None
        if name and Path(name).is_dir():
            files += sorted(str(p) for p in Path(name).rglob("*") if p.is_file())
        return files


def load_studies(configfiles: list[str]) -> list[Study]:
    """The studies a `--configfile` list stands for, read as the workflow reads it: the files merged
    in order as Snakemake merges them (nested mappings merged, other values replaced by the later
    file), so `ftgen estimate --configfile A B` costs what `snakemake --configfile A B` runs; a
    config with `studies:` (config/hpc.yaml) stands for the studies of its files."""
    if not configfiles:
        return []
    config: dict = {}
    for path in configfiles:
        config = deep_merge(config, load_yaml(path))
    if "studies" in config:
        return [study for path in config["studies"] for study in load_studies([str(path)])]
    return [Study(config, source=", ".join(str(p) for p in configfiles))]


def check_config(*, files: InputFiles) -> None:
    """`ftgen check-config FILE...`: each study file loads and validates (file:line for YAML
    errors; Snakemake's own --configfile errors name neither)."""
    for path in files:
        Study(load_yaml(path), source=path)
        print(f"{path}: ok")
