"""What a study runs: its fine-tunes and evaluation cells, and how their ids are spelled.

A fine-tune id (`<dataset>.<variant>.f<format>.n<size>.s<seed>`) names every artifact of one
training run; `FineTune.ID` is that format, and with wildcard names in place of values it is the
rules' pattern too. A model tag is `base` or a fine-tune id.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from .schema import ConfigError

NAME_RE = r"[A-Za-z0-9_]+"
VARIANT_RE = r"[A-Za-z0-9_-]+"
# the pattern of each field a path is made of: the rules' wildcard constraints, and parsing
FIELD_RE = {
    "model": NAME_RE,
    "dataset": NAME_RE,
    "variant": VARIANT_RE,
    "format": r"\d+",
    "shots": r"\d+",
    "size": r"\d+",
    "seed": r"\d+",
    "corpus": NAME_RE,
    "retriever": r"bm25|dense",
}


def id_regex(fmt: str) -> str:
    """`fmt` with each `{field}` replaced by its pattern (literal dots escaped)."""
    parts = re.split(r"\{(\w+)\}", fmt)
    return "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{FIELD_RE[p]})" for i, p in enumerate(parts))


@dataclass(frozen=True)
class FineTune:
    """One fine-tuning run; its id names every artifact it produces."""

    dataset: str
    variant: str
    format: int
    size: int
    seed: int

    ID = "{dataset}.{variant}.f{format}.n{size}.s{seed}"

    @property
    def id(self) -> str:
        return self.ID.format(**asdict(self))

    @classmethod
    def parse(cls, ft_id: str) -> FineTune:
        m = re.fullmatch(id_regex(cls.ID), ft_id)
        if not m:
            raise ConfigError(f"not a fine-tune id: {ft_id!r}")
        g = m.groupdict()
        return cls(g["dataset"], g["variant"], int(g["format"]), int(g["size"]), int(g["seed"]))


BASE = "base"  # the model tag of the model as released (not fine-tuned)
MODEL_TAG_RE = f"{BASE}|" + re.sub(r"\(\?P<\w+>", "(?:", id_regex(FineTune.ID))


def wildcard_constraints() -> dict[str, str]:
    """Every wildcard of the rules and its pattern (common.smk's `wildcard_constraints:`)."""
    return {**FIELD_RE, "model_tag": MODEL_TAG_RE}


@dataclass(frozen=True)
class EvalCell:
    """One evaluation: a model (`base` or a fine-tune id) on a dataset, prompt format and shots."""

    model_tag: str
    dataset: str
    format: int
    shots: int
