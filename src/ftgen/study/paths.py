"""Where every artifact of a study lives: one method per artifact path.

The rules declare their inputs and outputs with these methods, called with wildcard names
(`paths.examples("{dataset}")`) to get the pattern; reports, tools and tests call them with
values. No other code spells a results path.
"""

from __future__ import annotations

from pathlib import Path

from .plan import FineTune


class Paths:
    def __init__(self, results_dir: str | Path, cache_dir: str | Path):
        self.root = str(results_dir)  # <results_dir>/<study>
        self.cache = str(cache_dir)

    # ---- eval cells: <model>/<model tag>/<dataset>/f<format>.k<shots>
    @staticmethod
    def cell(model, model_tag, dataset, format, shots) -> str:
        """An eval cell's path below eval/ (and below logs/evaluate/, benchmarks/evaluate/, ...)."""
        return f"{model}/{model_tag}/{dataset}/f{format}.k{shots}"

    def eval_dir(self, model, model_tag, dataset, format, shots) -> str:
        return f"{self.root}/eval/{self.cell(model, model_tag, dataset, format, shots)}"

    def predictions(self, *cell) -> str:
        return f"{self.eval_dir(*cell)}/predictions.jsonl"

    def scores(self, *cell) -> str:
        return f"{self.eval_dir(*cell)}/scores.json"

    def judgements(self, *cell) -> str:
        return f"{self.eval_dir(*cell)}/judgements.jsonl"

    def judge_summary(self, *cell) -> str:
        return f"{self.eval_dir(*cell)}/judge.json"

    # ---- models
    def base_model(self, model) -> str:
        return f"{self.root}/models/{model}"

    @staticmethod
    def finetune_id(dataset="{dataset}", variant="{variant}", format="{format}", size="{size}", seed="{seed}") -> str:
        return FineTune.ID.format(dataset=dataset, variant=variant, format=format, size=size, seed=seed)

    def finetuned(self, model, finetune_id) -> str:
        return f"{self.root}/finetuned/{model}/{finetune_id}"

    def checkpoints(self, model, finetune_id) -> str:
        """Not an output: a killed run resumes from here."""
        return f"{self.root}/checkpoints/{model}/{finetune_id}"

    def model(self, model, model_tag) -> str:
        """The model scored in a cell: the base model or one of its fine-tunes."""
        return self.base_model(model) if model_tag == "base" else self.finetuned(model, model_tag)

    # ---- data
    def examples(self, dataset) -> str:
        return f"{self.root}/data/{dataset}/examples.parquet"

    def data_card(self, dataset) -> str:
        return f"{self.root}/data/{dataset}/card.json"

    def data_manifest(self, dataset) -> str:
        return f"{self.root}/data/{dataset}/manifest.json"

    @staticmethod
    def tokenized_name(dataset, variant, format) -> str:
        return f"{dataset}/{variant}.f{format}"

    def tokenized(self, model, dataset, variant, format) -> str:
        return f"{self.root}/tokenized/{model}/{self.tokenized_name(dataset, variant, format)}"

    # ---- S3FT
    def s3ft_file(self, model, dataset, name) -> str:
        return f"{self.root}/s3ft/{model}/{dataset}/{name}"

    def self_answers(self, model, dataset) -> str:
        return self.s3ft_file(model, dataset, "self.jsonl")

    def self_scores(self, model, dataset) -> str:
        return self.s3ft_file(model, dataset, "self.scores.json")

    def s3ft_examples(self, model, dataset) -> str:
        return self.s3ft_file(model, dataset, "examples.parquet")

    def s3ft_card(self, model, dataset) -> str:
        return self.s3ft_file(model, dataset, "card.json")

    def paraphrases(self, model, dataset) -> str:
        return self.s3ft_file(model, dataset, "paraphrases.jsonl")

    # ---- RAG
    def corpus_file(self, corpus, name) -> str:
        return f"{self.root}/rag/{corpus}/{name}"

    def corpus(self, corpus) -> str:
        return self.corpus_file(corpus, "corpus.parquet")

    def qa(self, corpus) -> str:
        return self.corpus_file(corpus, "qa.parquet")

    def corpus_card(self, corpus) -> str:
        return self.corpus_file(corpus, "card.json")

    def corpus_manifest(self, corpus) -> str:
        return self.corpus_file(corpus, "manifest.json")

    def index(self, corpus, retriever) -> str:
        return self.corpus_file(corpus, f"index.{retriever}")

    def retrieved(self, corpus, retriever) -> str:
        return self.corpus_file(corpus, f"retrieved.{retriever}.parquet")

    def recall(self, corpus, retriever) -> str:
        return self.corpus_file(corpus, f"recall.{retriever}.json")

    def judge_steps(self) -> str:
        return f"{self.root}/judge/steps.json"

    # ---- checks before a run
    def preflight(self) -> str:
        """`ftgen preflight`'s table: what the hub provides for the study (not part of `all`)."""
        return f"{self.root}/preflight.md"

    # ---- tables and plots
    def table(self, name, ext) -> str:
        return f"{self.root}/tables/{name}.{ext}"

    def plot(self, name, ext) -> str:
        return f"{self.root}/plots/{name}.{ext}"

    # ---- logs and benchmarks of a rule's job (`names`: the job's wildcards, as folders and file name)
    def log(self, rule, *names) -> str:
        return f"{self.root}/logs/{'/'.join((rule, *names))}.log"

    def benchmark(self, rule, *names) -> str:
        return f"{self.root}/benchmarks/{'/'.join((rule, *names))}.tsv"

    # ---- caches (shared by studies)
    def asset(self, filename) -> str:
        return f"{self.cache}/pypi/{filename}"

    def judgement_cache(self) -> str:
        return f"{self.cache}/judgements"

    def api_cache(self) -> str:
        return f"{self.cache}/api"
