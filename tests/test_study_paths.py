"""One method per artifact path (ftgen.study.paths): called with wildcard names it is the rules'
pattern, called with values it is the file; every path a rule declares round-trips through its
wildcards (the pattern, under the rules' wildcard constraints, matches the file and gives back
exactly the values it was made of)."""

from __future__ import annotations

import inspect
import re

import pytest
from snakemake.io import regex_from_filepattern

from ftgen.study import FineTune, Paths, wildcard_constraints

PATHS = Paths("results/study_a", "data/cache")
FT = FineTune("amazon_polarity", "fticl-fixed-k2", 1, 2000, 3)
VALUES = {  # tricky on purpose: underscores and dots in names, dashes in variants, a fine-tune id as a tag
    "model": "llama2_7b",
    "model_tag": FT.id,
    "dataset": "xsum_news",
    "variant": "fticl-fixed-k2",
    "format": "1",
    "shots": "10",
    "size": "2000",
    "seed": "3",
    "corpus": "squad_v2",
    "retriever": "dense",
    "filename": "x-1.0.whl",
    "name": "delta_heatmap",
    "ext": "png",
    "rule": "evaluate",
    "finetune_id": FT.id,
}


def constrained(pattern: str) -> str:
    """The pattern as a rule sees it: each wildcard with its global constraint."""
    constraints = wildcard_constraints()
    return re.sub(r"\{(\w+)\}", lambda m: f"{{{m[1]},{constraints[m[1]]}}}" if m[1] in constraints else m[0], pattern)


def path_methods():
    return [
        (n, m)
        for n, m in inspect.getmembers(PATHS, inspect.ismethod) + inspect.getmembers(Paths, inspect.isfunction)
        if not n.startswith("_") and n not in ("log", "benchmark", "finetune_id")
    ]


@pytest.mark.parametrize("name", sorted({n for n, _ in path_methods()}))
def test_every_path_round_trips_through_its_wildcards(name):
    method = getattr(PATHS, name)
    params = list(inspect.signature(method).parameters)
    if params == ["cell"]:  # predictions(*cell), scores(*cell), ...
        params = ["model", "model_tag", "dataset", "format", "shots"]
    wildcards = [f"{{{p}}}" for p in params]
    pattern, path = method(*wildcards), method(*[VALUES[p] for p in params])
    match = re.fullmatch(regex_from_filepattern(constrained(pattern)), path)
    assert match, f"{name}: {path!r} does not match its pattern {pattern!r}"
    assert match.groupdict() == {p: VALUES[p] for p in params if f"{{{p}}}" in pattern}


def test_the_finetune_id_is_spelled_once_and_parses_back():
    assert PATHS.finetune_id() == FineTune.ID
    assert FineTune.parse(
        PATHS.finetune_id(**{k: VALUES[k] for k in ("dataset", "variant", "format", "size", "seed")})
    ) == FineTune("xsum_news", "fticl-fixed-k2", 1, 2000, 3)
    assert FineTune.parse(FT.id) == FT
    assert re.fullmatch(wildcard_constraints()["model_tag"], FT.id)
    assert re.fullmatch(wildcard_constraints()["model_tag"], "base")
    assert not re.fullmatch(wildcard_constraints()["model_tag"], "xsum.sft.f0")
    with pytest.raises(ValueError, match="not a fine-tune id"):
        FineTune.parse("xsum.sft.f0.n10")


def test_a_cell_is_one_folder_whose_files_sit_together():
    cell = ("m", "base", "d", 0, 2)
    assert PATHS.eval_dir(*cell) == "results/study_a/eval/m/base/d/f0.k2"
    folder = {
        p.rsplit("/", 1)[0]
        for p in (PATHS.predictions(*cell), PATHS.scores(*cell), PATHS.judgements(*cell), PATHS.judge_summary(*cell))
    }
    assert folder == {PATHS.eval_dir(*cell)}
    assert PATHS.model("m", "base") == PATHS.base_model("m")
    assert PATHS.model("m", FT.id) == PATHS.finetuned("m", FT.id)


def test_no_other_module_spells_a_results_path():
    """The fine-tune id format and the eval-cell folder pattern appear in exactly one place."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    files = [*(repo / "src").rglob("*.py"), *(repo / "workflow").rglob("*.smk"), repo / "Snakefile"]
    for needle, owner in (
        (".n{size}.s{seed}", "src/ftgen/study/plan.py"),
        ("f{format}.k{shots}", "src/ftgen/study/paths.py"),
    ):
        where = [str(f.relative_to(repo)) for f in files if needle in f.read_text()]
        assert where == [owner], f"{needle!r} is spelled in {where}"
