"""The malloc a fine-tune runs with: what `ftgen launch` preloads for each `cpu_allocator` setting
(library folders made here), and a real tiny fine-tune under tcmalloc and under the system malloc:
the manifest names the allocator the process had mapped, and the weights are bit-identical (so
the setting is a resource, not a param that would retrain)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from ftgen.allocator import allocator_env, find_library
from helpers import REPO, smoke_study
from test_train import RECIPE, finetune_cmd


def _libs(folder, *names):
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return [folder]


def test_auto_prefers_tcmalloc_on_cpu_jobs_and_keeps_other_preloads(tmp_path):
    dirs = _libs(tmp_path, "libjemalloc.so.2", "libtcmalloc_minimal.so.4")
    env, why = allocator_env("auto", 0, {"LD_PRELOAD": "/opt/libfoo.so", "PATH": "/bin"}, dirs)
    assert env["LD_PRELOAD"] == f"{tmp_path}/libtcmalloc_minimal.so.4:/opt/libfoo.so"
    assert env["PATH"] == "/bin" and why.startswith("tcmalloc")
    only_je = _libs(tmp_path / "je", "libjemalloc.so.2")
    assert allocator_env("auto", 0, {}, only_je)[0]["LD_PRELOAD"] == f"{tmp_path}/je/libjemalloc.so.2"
    assert allocator_env("jemalloc", 0, {}, dirs)[0]["LD_PRELOAD"].endswith("libjemalloc.so.2")


def test_gpu_jobs_system_setting_and_user_preload_are_left_alone(tmp_path):
    dirs = _libs(tmp_path, "libtcmalloc_minimal.so.4")
    assert "LD_PRELOAD" not in allocator_env("auto", 8, {}, dirs)[0]  # GPU job
    assert "LD_PRELOAD" not in allocator_env("system", 0, {}, dirs)[0]
    env, why = allocator_env("tcmalloc", 0, {"LD_PRELOAD": "/x/libjemalloc.so.2"}, dirs)
    assert env["LD_PRELOAD"] == "/x/libjemalloc.so.2" and "already" in why
    assert allocator_env("tcmalloc", 8, {}, dirs)[0]["LD_PRELOAD"].endswith("libtcmalloc_minimal.so.4")


def test_missing_library(tmp_path):
    empty = _libs(tmp_path)
    env, why = allocator_env("auto", 0, {}, empty)
    assert "LD_PRELOAD" not in env and "apt install libtcmalloc-minimal4" in why
    with pytest.raises(ValueError, match=r"resources.finetune.cpu_allocator: jemalloc: no libjemalloc.so.2"):
        allocator_env("jemalloc", 0, {}, empty, field="resources.finetune.cpu_allocator")
    with pytest.raises(ValueError, match="not one of"):
        allocator_env("mimalloc", 0, {}, empty)


def test_schema_default_reaches_the_finetune_rule():
    assert smoke_study().resources_for("finetune")["cpu_allocator"] == "auto"


TCMALLOC = find_library("tcmalloc", os.environ)
needs_tcmalloc = pytest.mark.skipif(
    TCMALLOC is None and not os.environ.get("FTGEN_REQUIRE_ALLOCATOR"),
    reason="no tcmalloc installed (Debian libtcmalloc-minimal4); CI installs it and sets FTGEN_REQUIRE_ALLOCATOR",
)


@needs_tcmalloc
def test_finetune_runs_under_the_preloaded_allocator_with_identical_weights(tiny_model, tokenized, tmp_path):
    assert TCMALLOC, "FTGEN_REQUIRE_ALLOCATOR is set but no tcmalloc library was found"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    weights = {}
    for setting in ("tcmalloc", "system"):
        out = tmp_path / setting
        cmd = finetune_cmd(tiny_model, tokenized, RECIPE, out)
        cmd[cmd.index("--") : cmd.index("--")] = ["--cpu-allocator", setting]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"launch: malloc: {setting}" in proc.stdout + proc.stderr
        assert json.loads((out / "manifest.json").read_text())["cpu_allocator"] == setting
        weights[setting] = load_file(out / "adapter_model.safetensors")
    assert weights["tcmalloc"].keys() == weights["system"].keys()
    assert all((weights["tcmalloc"][k] == weights["system"][k]).all() for k in weights["system"])


@needs_tcmalloc
def test_loaded_allocator_reads_the_process_memory_map():
    """A child with tcmalloc preloaded reports it; one with LD_PRELOAD removed reports the system's."""
    assert TCMALLOC, "FTGEN_REQUIRE_ALLOCATOR is set but no tcmalloc library was found"
    code = "from ftgen.allocator import loaded_allocator; print(loaded_allocator())"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    for preload, expected in ((TCMALLOC, "tcmalloc"), (None, "system")):
        run_env = {**env, **({"LD_PRELOAD": preload} if preload else {})}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
