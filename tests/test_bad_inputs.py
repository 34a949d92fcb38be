"""Hostile and careless inputs: each case names the file / field / line and leaves nothing
half-written. (The table grows with issue 14; these are the cases fixed so far.)"""

from __future__ import annotations

import copy
import os
import stat

import pytest
from conftest import REPO

from ftgen.artifacts import atomic_dir, atomic_file, write_json
from ftgen.config import ConfigError, Study, load_yaml

HOSTILE = ["$(touch pwned)", "`touch pwned`", "a;touch pwned", "it's", 'say "hi"', "two words"]


def smoke_cfg():
    return copy.deepcopy(load_yaml(REPO / "config/studies/smoke.yaml"))


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("where", ["models", "assets", "tasks", "datasets"])
def test_names_that_become_paths_and_arguments_are_refused(where, name):
    cfg = smoke_cfg()
    key = next(iter(cfg.get(where) or {"x": {}}))
    section = cfg.setdefault(where, {})
    section[name] = copy.deepcopy(section.get(key, {"source": "tiny_random"}))
    with pytest.raises(ConfigError, match=where):
        Study(cfg, source="studies/hostile.yaml")


def test_outputs_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_file(tmp_path / "b.txt") as fh:
            fh.write("x")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    for path in (tmp_path / "a.json", tmp_path / "b.txt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, oct(path.stat().st_mode)
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
