"""Conda envs (envs/*.yaml) pin versions inside the ranges pyproject.toml declares."""

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from helpers import REPO


def test_env_pins_satisfy_pyproject_ranges():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    ranges = {Requirement(d).name.lower(): Requirement(d).specifier for d in deps}
    checked = 0
    for env in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        for line in pip:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s]+)", line)
            if m and m[1].lower() in ranges:
                assert ranges[m[1].lower()].contains(m[2]), (
                    f"{env.name}: {line} outside pyproject {ranges[m[1].lower()]}"
                )
                checked += 1
    assert checked >= 10
