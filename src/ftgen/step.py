"""How a pipeline step's arguments reach it from the command line (`ftgen.cli` reads these).

A step is a keyword-only function whose parameter names are the names its Snakemake rule gives
its inputs, outputs and params; the annotation of each parameter says how `python -m ftgen`
passes it (`--name VALUE`), so a step's arguments are declared once, in its signature. A
parameter with a default is optional on the command line; `log` is never an argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Arg:
    """`kind`: input (a path that must exist), output (a path the step writes), json (a config
    slice: one JSON object), path (a folder that need not exist: a cache, checkpoints), value
    (a plain value, converted by `type`), rest (everything after `--`)."""

    kind: str
    type: Callable | None = None
    nargs: int | str | None = None
    metavar: tuple[str, ...] | str | None = None
    choices: tuple[str, ...] | None = None
    positional: bool = False
    help: str = ""


Input = Annotated[str, Arg("input")]
OptionalInput = Annotated[str | None, Arg("input", help="empty or absent: none")]
Inputs = Annotated[list[str], Arg("input", nargs="+")]
Output = Annotated[str, Arg("output")]
Outputs = Annotated[list[str], Arg("output", nargs="+")]
Json = Annotated[dict, Arg("json", help="the rule's config slice, one JSON object")]
Folder = Annotated[str, Arg("path")]
Text = Annotated[str, Arg("value")]
Texts = Annotated[list[str], Arg("value", nargs="+")]
Int = Annotated[int, Arg("value", type=int)]
Threads = Annotated[int | None, Arg("value", type=int, help="CPU threads (Snakemake's {threads})")]
Retriever = Annotated[str, Arg("value", choices=("bm25", "dense"))]


def cell_arg(*fields: str) -> Annotated:
    """`--cell A B C`: what an eval cell is, one value per field (stored with its results)."""
    return Annotated[list[str], Arg("value", nargs=len(fields), metavar=tuple(f.upper() for f in fields))]


EvalCell = cell_arg("model", "tag", "dataset", "format", "shots")
JudgedCell = cell_arg("model", "tag", "dataset")


class UsageError(ValueError):
    """Bad input to a step that the command line reports as one line and exit status 2 (e.g. a
    plot given without its .pdf, a study config that does not validate)."""


InputFiles = Annotated[list[str], Arg("input", nargs="+", positional=True)]
