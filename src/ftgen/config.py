"""Study configuration: registries + study file -> one resolved, validated `Study`.

The Snakefile validates the raw study config against `config/schema/config.schema.yaml`, then
calls `Study.from_config`, which merges the shared registries (assets, tasks, dataset catalog),
checks every cross-reference (unknown task, adapter, dataset, asset), and enumerates the
study's jobs. Rules receive only the slice of config they depend on (`*_params` methods), so
editing one value reruns exactly the jobs it affects.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY_DIR = REPO_ROOT / "config" / "registry"
SCHEMA_DIR = REPO_ROOT / "config" / "schema"

ADAPTERS = ("bigbench", "vader", "squad", "paraphrase_pairs", "jsonl", "csv", "parquet", "hf", "rag", "nq_restored", "mbpp")
TASK_TYPES = ("classification", "generation", "multiple_choice")
MODEL_SOURCES = ("hub", "local", "pypi_gguf", "tiny_random")
NAME_RE = r"[A-Za-z0-9_]+"
VARIANT_RE = r"[A-Za-z0-9_-]+"
FT_ID_RE = re.compile(
    rf"^(?P<dataset>{NAME_RE})\.(?P<variant>{VARIANT_RE})\.f(?P<format>\d+)\.n(?P<size>\d+)\.s(?P<seed>\d+)$"
)

# what each template is formatted with (ftgen.judge.write_steps / form_prompt, ftgen.s3ft)
JUDGE_PLACEHOLDERS = {"steps_prompt": ["definition"],
                      "form_prompt": ["definition", "steps", "question", "reference", "answer", "name"]}
S3FT_PLACEHOLDERS = ["task", "gold"]

SLURM_ENV = {"partition": "FTGEN_SLURM_PARTITION", "gpu_partition": "FTGEN_SLURM_GPU_PARTITION",
             "account": "FTGEN_SLURM_ACCOUNT", "qos": "FTGEN_SLURM_QOS"}


class ConfigError(ValueError):
    """A study config that cannot run; the message names the file and the field."""


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """yaml.safe_load, except that a key written twice in one mapping is an error (PyYAML keeps
    the last one silently: `datasets: {a: ..., a: ...}` would drop the first dataset)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the constructor reports it
                    continue
                mark = key_node.start_mark
                if first is not None:
                    at = f"line {first[0]}" + (f", column {first[1]}; this one at column {mark.column + 1}"
                                               if first[0] == mark.line + 1 else "")
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at {at}); YAML would keep only the last one "
                        "and silently ignore the other", mark)
                seen[key] = (mark.line + 1, mark.column + 1)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict:
    """A config file (study, registry, schema) as a dict: duplicate keys, YAML syntax errors, an
    empty file or a top level that is not a mapping are ConfigErrors naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.load(fh, Loader=StrictLoader)  # noqa: S506 (a SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            if str(exc.problem).startswith("duplicate key"):
                raise ConfigError(f"{where}: {exc.problem}") from None
            context = exc.context or ""
            if context and exc.context_mark is not None and exc.context_mark.line != getattr(mark, "line", None):
                context += f" (line {exc.context_mark.line + 1})"
            what = ": ".join(x for x in (context, exc.problem) if x)
            raise ConfigError(f"{where}: invalid YAML: {what}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        raise ConfigError(f"{path}: file is empty (expected a mapping of config keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of config keys at the top level, got a {type(data).__name__}")
    return data


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge `override` into a copy of `base` (lists and scalars are replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable config slice (for manifests)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@lru_cache(maxsize=None)
def _schema(schema_name: str) -> dict:
    return load_yaml(SCHEMA_DIR / schema_name)


@lru_cache(maxsize=None)
def _validator(schema_name: str, definition: str | None = None, required: tuple[str, ...] = ()):
    """One compiled validator per schema file (or one of its `$defs`) and process: a study
    validates every task and asset of the registries (18 validations for one study, 54 when
    three are planned together)."""
    import jsonschema

    schema = _schema(schema_name)
    if definition is not None:  # e.g. a registry dataset entry against config.schema.yaml#/$defs/dataset
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}",
                  **({"required": list(required)} if required else {})}
    return jsonschema.Draft202012Validator(schema)


def _schema_keys(schema: dict, root: dict, depth: int = 0) -> set[str]:
    """The keys a (sub)schema declares, through its local `$ref`s and `allOf`s."""
    keys = set(schema.get("properties", {}))
    if depth > 8:
        return keys
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        keys |= _schema_keys(root["$defs"][ref.split("/")[-1]], root, depth + 1)
    for sub in schema.get("allOf", []):
        keys |= _schema_keys(sub, root, depth + 1)
    return keys


def _schema_error_lines(err, root: dict, prefix: str) -> list[str]:
    import difflib

    path = [prefix] if prefix else []
    path += [str(p) for p in err.absolute_path]
    field = ".".join(path) or "<top level>"
    title = err.schema.get("title") if isinstance(err.schema, dict) else None
    if err.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(err.instance, dict):
        known = _schema_keys(err.schema, root)
        lines = []
        for key in [k for k in err.instance if k not in known]:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"  - {'.'.join([*path, str(key)])}: unknown key{f' for {title}' if title else ''}{hint} "
                         f"(known: {', '.join(sorted(known))})")
        if lines:
            return lines
    return [f"  - {field}: {err.message}{f' ({title})' if title else ''}"]


def validate_schema(config: dict, schema_name: str, source: str, definition: str | None = None,
                    required: tuple[str, ...] = (), prefix: str = "") -> None:
    """Validate with jsonschema and report the offending field path and the file. `definition`
    validates against one of the schema's `$defs` (with `required` keys added); `prefix` is the
    field path of `config` inside its file (e.g. `datasets.mmlu` of a registry entry)."""
    validator = _validator(schema_name, definition, required)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [line for err in errors[:10] for line in _schema_error_lines(err, _schema(schema_name), prefix)]
        raise ConfigError(f"{source}: config does not match {schema_name}:\n" + "\n".join(lines))


# Folders the pipeline must never write into: results or caches there (and an `rm -rf` of them
# afterwards) would damage the system. Refused as they are (`/`, `/etc`, `/usr`, ...); the trees
# of system configuration, boot files, binaries, libraries and kernel pseudo-filesystems also
# anywhere inside; the home folder itself and the folders above it. (Not /usr or /var as
# trees: projects live in /usr/src/app or /var/lib/... in containers.)
SYSTEM_DIRS = ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
               "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
               "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/local", "/usr/local/bin",
               "/usr/local/lib", "/usr/sbin", "/usr/share", "/usr/src", "/var", "/var/cache", "/var/lib", "/var/log",
               "/var/tmp")
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin", "/sys")


def check_output_dir(value: str, where: str) -> str:
    """`results_dir` / `cache_dir`: refused when it is a filesystem root, a system folder (or
    inside one of the system trees), or the home folder (or one above it)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be a folder path, got {value!r}")
    if value.startswith("~"):
        raise ConfigError(f"{where}: {value!r}: '~' is not expanded here (a folder named '~' would be made); "
                          "write the path out")
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
        raise ConfigError(f"{where}: {value!r} resolves to {path}, {what}; the pipeline writes (and you may later "
                          "delete) everything under it: choose a folder of its own, e.g. results")
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
            raise ConfigError(f"{where}: placeholder {shown!r}: only plain {{name}} placeholders are filled "
                              f"(names: {sorted(allowed)}); write a literal brace as {{{{ or }}}}")
        used.add(field)
    unknown = used - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: placeholder(s) {sorted(unknown)} are not among {sorted(allowed)}")
    return used


@dataclass(frozen=True)
class FineTune:
    """One fine-tuning run; its id names every artifact it produces."""

    dataset: str
    variant: str
    format: int
    size: int
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}.{self.variant}.f{self.format}.n{self.size}.s{self.seed}"

    @classmethod
    def parse(cls, ft_id: str) -> "FineTune":
        m = FT_ID_RE.match(ft_id)
        if not m:
            raise ConfigError(f"not a fine-tune id: {ft_id!r}")
        g = m.groupdict()
        return cls(g["dataset"], g["variant"], int(g["format"]), int(g["size"]), int(g["seed"]))


@dataclass(frozen=True)
class EvalCell:
    model_tag: str  # "base" or a FineTune id
    dataset: str
    format: int
    shots: int


class Study:
    """A resolved study: registries merged, references checked, jobs enumerated."""

    def __init__(self, config: dict, source: str = "config", registry_dir: Path = REGISTRY_DIR):
        validate_schema(config, "config.schema.yaml", source)
        self.raw = config
        self.source = source
        self.name: str = config["study"]
        # never a filesystem root, a system folder or the home folder (check_output_dir)
        results_dir = check_output_dir(config.get("results_dir", "results"), f"{source}: results_dir")
        self.results_dir = Path(results_dir) / self.name
        self.cache_dir = Path(check_output_dir(config.get("cache_dir", "data/cache"), f"{source}: cache_dir"))
        self.assets = deep_merge(load_yaml(registry_dir / "assets.yaml"), config.get("assets", {}))
        self.tasks = deep_merge(load_yaml(registry_dir / "tasks.yaml"), config.get("tasks", {}))
        for task in self.tasks.values():  # YAML reads `0:` as an int key; JSON params need str
            if isinstance(task, dict) and isinstance(task.get("prompts"), dict):
                task["prompts"] = {str(k): v for k, v in task["prompts"].items()}
        catalog = load_yaml(registry_dir / "datasets.yaml")
        # `model` names one base model or a list (e.g. two generators in the RAG study)
        self.model_names: list[str] = [config["model"]] if isinstance(config["model"], str) else list(config["model"])
        self.model_name: str = self.model_names[0]
        self.models: dict = config["models"]
        self.split_defaults: dict = config["split"]
        self.finetune_cfg: dict = config["finetune"]
        self.eval_cfg: dict = config["evaluate"]
        self.resources: dict = config.get("resources", {})
        self.slurm: dict = config.get("slurm", {})
        self.rag: dict = config.get("rag") or {}
        self.s3ft: dict = config.get("s3ft") or {}
        judge_defaults = load_yaml(registry_dir / "judge.yaml")
        if config.get("judge"):  # the registry's defaults obey the study's judge schema
            validate_schema(judge_defaults, "config.schema.yaml", str(registry_dir / "judge.yaml"), definition="judge")
        self.judge: dict = deep_merge(judge_defaults, config["judge"]) if config.get("judge") else {}

        self.datasets: dict[str, dict] = {}
        for name, spec in config["datasets"].items():
            if name not in catalog and not (spec or {}).get("source"):
                raise ConfigError(
                    f"{source}: datasets.{name}: not in config/registry/datasets.yaml and no "
                    f"`source` given"
                )
            if name in catalog:  # the catalog entries a study uses obey the same schema as its own
                validate_schema(catalog[name], "config.schema.yaml", str(registry_dir / "datasets.yaml"),
                                definition="dataset", required=("task", "source"), prefix=f"datasets.{name}")
            # a study's `source` replaces the catalog's (a hub copy of a dataset shares no adapter keys)
            merged = deep_merge(catalog.get(name, {}), {k: v for k, v in (spec or {}).items() if k != "source"})
            if (spec or {}).get("source"):
                merged["source"] = copy.deepcopy(spec["source"])
            merged["split"] = deep_merge(self.split_defaults, merged.get("split", {}))
            self.datasets[name] = merged
        self._check_references()

    # ------------------------------------------------------------------ validation
    def _check_references(self) -> None:
        src = self.source
        for tname, task in self.tasks.items():
            validate_schema(task, "task.schema.yaml", f"{src} (task {tname!r})", prefix=f"tasks.{tname}")
            if task["type"] == "classification" and not task.get("labels"):
                raise ConfigError(f"{src}: tasks.{tname}.labels: classification task needs labels")
            if "labels" in task["inputs"]:
                raise ConfigError(f"{src}: tasks.{tname}.inputs: 'labels' is reserved (the {{labels}} placeholder)")
            for fmt, template in task["prompts"].items():  # the input fields, and {labels} if the task has labels
                check_placeholders(template, [*task["inputs"], *(["labels"] if task.get("labels") else [])],
                                   f"{src}: tasks.{tname}.prompts.{fmt}")
        for aname, asset in self.assets.items():
            validate_schema(asset, "asset.schema.yaml", f"{src} (asset {aname!r})")
        for dname, ds in self.datasets.items():
            where = f"{src}: datasets.{dname}"
            if ds.get("task") not in self.tasks:
                raise ConfigError(
                    f"{where}.task: unknown task {ds.get('task')!r}; known: {sorted(self.tasks)}"
                )
            adapter = (ds.get("source") or {}).get("adapter")
            if adapter not in ADAPTERS:
                raise ConfigError(
                    f"{where}.source.adapter: unknown dataset adapter {adapter!r}; known: {list(ADAPTERS)}"
                )
            asset = ds["source"].get("asset")
            if asset is not None and asset not in self.assets:
                raise ConfigError(f"{where}.source.asset: unknown asset {asset!r}; known: {sorted(self.assets)}")
            task_labels = self.tasks[ds["task"]].get("labels") or []
            extra = set(ds.get("labels") or []) - set(task_labels)
            if extra:
                raise ConfigError(f"{where}.labels: {sorted(extra)} not in the labels of task {ds['task']!r}")
            unscored = [lab for lab in task_labels if ds.get("labels") and lab not in ds["labels"]]
            for fmt, template in self.tasks[ds["task"]]["prompts"].items():
                named = [lab for lab in unscored if re.search(rf"\b{re.escape(lab)}\b", template)]
                if named:  # the model would be asked to choose a label that is never scored
                    raise ConfigError(
                        f"{where}.labels: task {ds['task']!r} prompt {fmt} names {named}, which this dataset "
                        f"never scores; write the label set as {{labels}} in the task's prompts")
            if not re.fullmatch(NAME_RE, dname):
                raise ConfigError(f"{where}: dataset names may use letters, digits and _ only")
        for mname, model in self.models.items():
            if model["source"] == "pypi_gguf" and model.get("asset") not in self.assets:
                raise ConfigError(f"{src}: models.{mname}.asset: unknown asset {model.get('asset')!r}")
        for name in self.model_names:
            if name not in self.models:
                raise ConfigError(f"{src}: model: {name!r} is not defined under models")
            if self.is_api(name):  # answers from an endpoint: generation only, never fine-tuned
                scored = [d for d in self.eval_datasets if self.task_of(d)["type"] != "generation"]
                if scored:
                    raise ConfigError(f"{src}: model: {name!r} is an API model (generation only) but the study "
                                      f"scores {scored} by log-likelihood")
                if self.s3ft:
                    raise ConfigError(f"{src}: model: {name!r} is an API model; S3FT needs the model's own weights")
        from .demos import VariantError, parse_variant

        by_task = self.finetune_cfg.get("variants_by_task", {})
        for variant in [*self.finetune_cfg.get("variants", ["sft"]), *(v for vs in by_task.values() for v in vs)]:
            try:
                parse_variant(variant)
            except VariantError as exc:
                raise ConfigError(f"{src}: finetune.variants: {exc}") from None
        for dname in self.finetune_cfg["train_on"]:
            if dname not in self.datasets:
                raise ConfigError(f"{src}: finetune.train_on: unknown dataset {dname!r}")
        recipes = [self.finetune_cfg["recipe"], *self.finetune_cfg.get("overrides", {}).values()]
        for ds_json in {r.get("deepspeed") for r in recipes} - {None}:
            if not Path(ds_json).is_file():
                raise ConfigError(f"{src}: finetune.recipe.deepspeed: no DeepSpeed config at {ds_json!r}")
        for dname in self.finetune_cfg.get("overrides", {}):
            if dname not in self.datasets:
                raise ConfigError(f"{src}: finetune.overrides: unknown dataset {dname!r}")
        for dname in self.eval_datasets:
            if dname not in self.datasets:
                raise ConfigError(f"{src}: evaluate.datasets: unknown dataset {dname!r}")
        for fmt in self.eval_cfg["formats"] + [self.finetune_cfg.get("format", 0)]:
            for dname in self.eval_datasets:
                task = self.task_of(dname)
                if str(fmt) not in task["prompts"]:
                    raise ConfigError(f"{src}: prompt format {fmt} not defined for task {self.datasets[dname]['task']!r}")
        for dname, ds in self.datasets.items():
            sizes = ds["split"]
            if dname in self.finetune_cfg["train_on"] and max(self.sizes_for(dname)) > sizes.get("train", 0):
                raise ConfigError(
                    f"{src}: finetune.sizes: {max(self.sizes_for(dname))} exceeds "
                    f"datasets.{dname}.split.train = {sizes.get('train')}"
                )
            if max(self.shots_for(dname)) > sizes.get("fewshot", 0):
                raise ConfigError(
                    f"{src}: evaluate.shots: {max(self.shots_for(dname))} shots need a few-shot pool of "
                    f"that size; datasets.{dname}.split.fewshot = {sizes.get('fewshot')}"
                )
        self._check_rag()
        self._check_s3ft()
        self._check_templates()

    def _check_templates(self) -> None:
        """The judge's and S3FT's prompt templates name only what their code fills in
        (ftgen.judge.write_steps / form_prompt, ftgen.s3ft)."""
        src = self.source
        if self.judge:
            for key, names in JUDGE_PLACEHOLDERS.items():
                if self.judge.get(key) is not None:
                    check_placeholders(self.judge[key], names, f"{src}: judge.{key}")
            if self.judge.get("cache_dir") is not None:
                check_output_dir(self.judge["cache_dir"], f"{src}: judge.cache_dir")
        if self.s3ft:
            check_placeholders(self.s3ft["paraphrase_prompt"], S3FT_PLACEHOLDERS, f"{src}: s3ft.paraphrase_prompt")

    def _check_s3ft(self) -> None:
        src = self.source
        for dname in self.finetune_cfg.get("sizes_by_dataset", {}):
            if dname not in self.finetune_cfg["train_on"]:
                raise ConfigError(f"{src}: finetune.sizes_by_dataset: {dname!r} is not in finetune.train_on")
        for dname in self.finetune_cfg["train_on"]:
            if "s3ft" in self.variants_for(dname):
                task = self.datasets[dname]["task"]
                if task not in self.s3ft.get("judges", {}):
                    raise ConfigError(f"{src}: s3ft.judges: no judge for task {task!r} (training set {dname!r} "
                                      f"has the s3ft variant)")
        for dname in self.eval_cfg.get("general", []):
            if dname not in self.datasets:
                raise ConfigError(f"{src}: evaluate.general: unknown dataset {dname!r}")

    def _check_rag(self) -> None:
        src = self.source
        for dname, ds in self.datasets.items():
            if ds["source"]["adapter"] == "rag":
                corpus = ds["source"].get("corpus")
                if corpus not in self.rag.get("corpora", {}):
                    raise ConfigError(f"{src}: datasets.{dname}.source.corpus: unknown corpus {corpus!r}; "
                                      f"define it under rag.corpora")
        if not self.rag:
            return
        for cname, corpus in self.rag["corpora"].items():
            asset = corpus["source"].get("asset")
            if asset is not None and asset not in self.assets:
                raise ConfigError(f"{src}: rag.corpora.{cname}.source.asset: unknown asset {asset!r}")
        retrievers = self.rag["retrievers"]
        for cname in self.rag["corpora"]:
            if self.retriever_for(cname) not in retrievers:
                raise ConfigError(f"{src}: rag.corpora.{cname}: retriever {self.retriever_for(cname)!r} is not in "
                                  f"rag.retrievers {retrievers} (it must be built)")
        dense = self.rag.get("dense", {}).get("model", {})
        if "dense" in retrievers and dense.get("asset") and dense["asset"] not in self.assets:
            raise ConfigError(f"{src}: rag.dense.model.asset: unknown asset {dense['asset']!r}")
        if self.judge:
            jm = self.judge.get("model")
            if self.judge["backend"] == "hf" and jm not in self.models:
                raise ConfigError(f"{src}: judge.model: {jm!r} is not defined under models (backend hf)")
            unknown = set(self.judge.get("steps", {})) - set(self.judge["criteria"])
            if unknown:
                raise ConfigError(f"{src}: judge.steps: {sorted(unknown)} are not judge.criteria")

    # ------------------------------------------------------------------ lookups
    def task_of(self, dataset: str) -> dict:
        return self.tasks[self.datasets[dataset]["task"]]

    @property
    def eval_datasets(self) -> list[str]:
        chosen = self.eval_cfg.get("datasets", "all")
        return list(self.datasets) if chosen == "all" else list(chosen)

    def shots_for(self, dataset: str) -> list[int]:
        """Evaluation shot counts: per task (`evaluate.shots_by_task`) or the study default."""
        return self.eval_cfg.get("shots_by_task", {}).get(self.datasets[dataset]["task"], self.eval_cfg["shots"])

    def variants_for(self, dataset: str) -> list[str]:
        """Training variants: per task (`finetune.variants_by_task`) or the study default."""
        ft = self.finetune_cfg
        return ft.get("variants_by_task", {}).get(self.datasets[dataset]["task"], ft.get("variants", ["sft"]))

    def sizes_for(self, dataset: str) -> list[int]:
        """Training-set sizes: per training dataset (`finetune.sizes_by_dataset`) or the study's."""
        return self.finetune_cfg.get("sizes_by_dataset", {}).get(dataset, self.finetune_cfg["sizes"])

    @cached_property
    def finetunes(self) -> list[FineTune]:
        ft = self.finetune_cfg
        return [
            FineTune(d, v, ft.get("format", 0), n, s)
            for d in ft["train_on"]
            for v in self.variants_for(d)
            for n in self.sizes_for(d)
            for s in ft["seeds"]
        ]

    @property
    def model_tags(self) -> list[str]:
        return ["base"] + [f.id for f in self.finetunes]

    @cached_property
    def eval_cells(self) -> list[EvalCell]:
        """Every (model tag, dataset, format, shots) to score; with `evaluate.scope: in_domain` a
        fine-tuned model is scored only on the dataset it was trained on (the base on all)."""
        in_domain = self.eval_cfg.get("scope", "all") == "in_domain"
        general = set(self.eval_cfg.get("general", []))  # benchmarks every model is scored on
        return [
            EvalCell(tag, d, fmt, k)
            for tag in self.model_tags
            for d in self.eval_datasets
            if not (in_domain and tag != "base" and FineTune.parse(tag).dataset != d and d not in general)
            for fmt in self.eval_cfg["formats"]
            for k in self.shots_for(d)
        ]

    @property
    def rag_datasets(self) -> list[str]:
        return [d for d, ds in self.datasets.items() if ds["source"]["adapter"] == "rag"]

    def asset_path(self, name: str) -> Path:
        return self.cache_dir / "pypi" / self.assets[name]["filename"]

    # ------------------------------------------------------------------ param slices
    def model_params(self, model: str) -> dict:
        spec = dict(self.models[model])
        if spec["source"] == "pypi_gguf":
            spec["asset_spec"] = self.assets[spec["asset"]]
        return spec

    def labels_of(self, dataset: str) -> list[str] | None:
        """The label set: the dataset's own `labels` (a 2-way set inside a 3-way task, e.g. RTE)
        or its task's."""
        return self.datasets[dataset].get("labels") or self.task_of(dataset).get("labels")

    def dataset_params(self, dataset: str) -> dict:
        ds = self.datasets[dataset]
        task = self.task_of(dataset)
        source = ds["source"]
        if source["adapter"] == "rag":  # what the contexts are made of is part of the dataset
            source = {**source, "retriever": self.retriever_for(source["corpus"]), "k": int(self.rag["k"])}
        return {
            "name": dataset,
            "task": ds["task"],
            "task_type": task["type"],
            "inputs": task["inputs"],
            "labels": self.labels_of(dataset),
            "source": source,
            "split": ds["split"],
            "asset": self.assets[ds["source"]["asset"]] if ds["source"].get("asset") else None,
        }

    def prompt_params(self, dataset: str, model: str | None = None) -> dict:
        """What prompt rendering of `dataset` depends on: task type, template, labels, lengths."""
        task = self.task_of(dataset)
        ds = self.datasets[dataset]
        model = self.models[model or self.model_name]
        return {
            "task": self.datasets[dataset]["task"],
            "type": task["type"],
            "inputs": task["inputs"],
            "prompts": {str(k): v for k, v in task["prompts"].items()},
            "labels": self.labels_of(dataset),
            "chat_template": bool(model.get("chat_template", False)),
            "max_length": int(model.get("max_length", 512)),
            "max_new_tokens": int(ds.get("max_new_tokens") or task.get("max_new_tokens", 32)),
            # only when the task or dataset sets it, so existing studies' params (and outputs) stay as they are
            **({"stop": ds["stop"]} if "stop" in ds else {"stop": task["stop"]} if "stop" in task else {}),
            **({"scoring": task["scoring"]} if "scoring" in task else {}),
        }

    def recipe(self, ft: FineTune) -> dict:
        ft_cfg = self.finetune_cfg
        recipe = deep_merge(ft_cfg["recipe"], ft_cfg.get("overrides", {}).get(ft.dataset, {}))
        recipe.update(size=ft.size, seed=ft.seed)
        return recipe

    def tokenize_params(self, dataset: str, variant: str, fmt: int, model: str | None = None) -> dict:
        params = {"prompt": self.prompt_params(dataset, model), "variant": variant, "format": fmt}
        if variant != "sft":
            params["demo_seed"] = int(self.finetune_cfg.get("demo_seed", 0))
        return params

    def is_api(self, model: str) -> bool:
        return self.models[model]["source"] == "api"

    def cells_for(self, model: str) -> list[EvalCell]:
        """The cells a model is scored in: an API model only as itself (it is never fine-tuned)."""
        return [c for c in self.eval_cells if c.model_tag == "base" or not self.is_api(model)]

    def api_params(self, model: str) -> dict:
        spec = self.models[model]
        return {"name": spec["name"], "base_url": spec.get("base_url"),
                "api_key_env": spec.get("api_key_env", "OPENAI_API_KEY"), "timeout_s": spec.get("timeout_s", 120),
                "max_retries": spec.get("max_retries", 6), "backoff_s": spec.get("backoff_s", 2.0),
                "cache_dir": str(self.cache_dir / "api")}

    def eval_params(self, cell_dataset: str, fmt: int, shots: int, model: str | None = None) -> dict:
        from .metrics import METRIC_OPTIONS, ROUGE_DEFAULTS

        ev = self.eval_cfg
        task = self.task_of(cell_dataset)
        defaults = {"rouge": ROUGE_DEFAULTS}
        metric_options = {k: {**defaults[k], **task[k]} for k in METRIC_OPTIONS if k in task}
        return {
            "prompt": self.prompt_params(cell_dataset, model),
            "format": fmt,
            "shots": shots,
            "metrics": task["metrics"],
            "batch_size": int(ev.get("batch_size", 8)),
            "limit": ev.get("limit"),
            "seed": int(ev.get("seed", 0)),
            "bf16": ev.get("bf16", "auto"),
            # only when the task sets a metric option (completed with the defaults), so existing
            # studies' params (and outputs) stay as they are; metrics.score(..., options=...)
            **({"metric_options": metric_options} if metric_options else {}),
            **({"api": self.api_params(model or self.model_name)} if self.is_api(model or self.model_name) else {}),
        }

    def aggregate_params(self) -> dict:
        return {
            "study": self.name,
            "datasets": {d: {"task": self.datasets[d]["task"]} for d in self.datasets},
            # only the study's tasks: adding a task to the registry must not rerun every study's tables
            "primary_metric": {t: v["primary_metric"] for t, v in self.tasks.items()
                               if t in {ds["task"] for ds in self.datasets.values()}},
            "labels": {d: self.labels_of(d) for d in self.datasets},
            "bootstrap": int(self.eval_cfg.get("bootstrap", 1000)),
            "bootstrap_seed": int(self.eval_cfg.get("seed", 0)),
        }

    # ------------------------------------------------------------------ RAG + judge slices
    def corpus_params(self, corpus: str) -> dict:
        spec = self.rag["corpora"][corpus]
        asset = spec["source"].get("asset")
        return {"name": corpus, **spec, "asset": self.assets[asset] if asset else None}

    def retriever_for(self, corpus: str) -> str:
        """The retriever whose top-k passages the generator reads (per corpus, else `rag.retriever`)."""
        return self.rag["corpora"][corpus].get("retriever") or self.rag["retriever"]

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

    def corpus_asset(self, corpus: str) -> Path | None:
        asset = self.rag["corpora"][corpus]["source"].get("asset")
        return self.asset_path(asset) if asset else None

    def index_params(self, retriever: str) -> dict:
        return dict(self.rag.get(retriever, {}))

    def dense_asset(self) -> Path | None:
        asset = self.rag.get("dense", {}).get("model", {}).get("asset")
        return self.asset_path(asset) if asset else None

    def retrieve_params(self, corpus: str, retriever: str) -> dict:
        # how deep to retrieve, not `k`: a smaller or larger context within that depth reruns only
        # the dataset that reads it, not retrieval
        return {"corpus": corpus, "depth": max([int(self.rag["k"]), *self.rag["recall_at"]]),
                "recall_at": self.rag["recall_at"], **self.index_params(retriever)}

    def judge_params(self) -> dict:
        """The judge's identity, prompts, criteria and scoring; the API key is never here (only
        the name of the environment variable that holds it)."""
        j = dict(self.judge)
        if j["backend"] == "hf":
            j["chat_template"] = bool(self.models[j["model"]].get("chat_template", False))
        return j

    def rag_report_params(self) -> dict:
        return {"study": self.name, "criteria": list(self.judge["criteria"]), "score": self.judge["score"],
                "samples": int(self.judge["samples"]),
                "bootstrap": int(self.eval_cfg.get("bootstrap", 1000)),
                "bootstrap_seed": int(self.eval_cfg.get("seed", 0)),
                "datasets": {d: self.datasets[d]["source"]["corpus"] for d in self.rag_datasets}}

    # ------------------------------------------------------------------ S3FT slices
    def self_answer_params(self, dataset: str, model: str | None = None) -> dict:
        """The base model answering its own training prompts (greedy), judged by the task's judge."""
        judge = self.s3ft["judges"][self.datasets[dataset]["task"]]
        params = self.eval_params(dataset, int(self.finetune_cfg.get("format", 0)), 0, model)
        return {**params, "split": "train", "metrics": [judge["metric"]]}

    def s3ft_params(self, dataset: str, model: str | None = None) -> dict:
        return {"dataset": dataset, "prompt": self.prompt_params(dataset, model),
                "format": int(self.finetune_cfg.get("format", 0)),
                "judge": self.s3ft["judges"][self.datasets[dataset]["task"]],
                "paraphrase_prompt": self.s3ft["paraphrase_prompt"],
                "batch_size": int(self.eval_cfg.get("batch_size", 8)), "bf16": self.eval_cfg.get("bf16", "auto")}

    def s3ft_report_params(self) -> dict:
        return {"study": self.name, "general": list(self.eval_cfg.get("general", [])),
                "train_on": [d for d in self.finetune_cfg["train_on"] if "s3ft" in self.variants_for(d)],
                "primary_metric": {t: v["primary_metric"] for t, v in self.tasks.items()
                                   if t in {ds["task"] for ds in self.datasets.values()}},
                "tasks": {d: self.datasets[d]["task"] for d in self.datasets}}

    def rule_resources(self, rule: str) -> dict:
        defaults = {"mem_mb": 4000, "runtime": 30, "gpu": 0, "threads": 1, "nodes": 1, "procs": 0}
        return deep_merge(deep_merge(defaults, self.resources.get("default", {})), self.resources.get(rule, {}))

    def slurm_resources(self, rule: str, env: Mapping[str, str] | None = None) -> dict:
        """Site settings as the resources the SLURM executor reads; only those that are set.

        The environment (FTGEN_SLURM_*) wins over the study's `slurm:` section, so one study
        file runs at any site. Resources, unlike params, never trigger reruns.
        """
        env = os.environ if env is None else env
        site = {key: env.get(var) or self.slurm.get(key) for key, var in SLURM_ENV.items()}
        res = self.rule_resources(rule)
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
