import copy
import json

import pytest

from ftgen.study import ConfigError, FineTune, Study, load_studies, load_yaml, with_defaults
from helpers import REPO, smoke_study


def smoke_cfg():
    return load_yaml(REPO / "config/studies/smoke.yaml")


def test_default_and_study_configs_resolve():
    default = Study(load_yaml(REPO / "config/config.yaml"), source="config.yaml")
    assert default.name == "default"
    tasks = {default.datasets[d]["task"] for d in default.finetune["train_on"]}
    assert tasks == {"sentiment", "nli", "question_generation"}
    # every training task has >= 2 evaluation domains (cross-domain cells exist)
    for task in tasks:
        assert sum(default.datasets[d]["task"] == task for d in default.eval_datasets) >= 2
    assert len(default.eval_cells) == (1 + len(default.finetunes)) * sum(
        len(default.shots_for(d)) for d in default.eval_datasets
    )
    # the default study compares SFT with FTICL and has a few-shot column
    assert {ft.variant for ft in default.finetunes} == {"sft", "fticl-fixed-k1"}
    assert any(max(default.shots_for(d)) > 0 for d in default.eval_datasets)


def test_finetune_id_roundtrip():
    ft = FineTune("vader_movies", "fticl-fixed-k2", 0, 240, 3)
    assert FineTune.parse(ft.id) == ft
    with pytest.raises(ConfigError):
        FineTune.parse("not.an.id")


def test_recipe_override_applies_to_one_dataset_only():
    cfg = smoke_cfg()
    cfg["finetune"]["overrides"] = {"nli_a": {"learning_rate": 0.5}}
    study = Study(cfg)
    by_ds = {ft.dataset: study.recipe(ft) for ft in study.finetunes}
    assert by_ds["nli_a"]["learning_rate"] == 0.5
    assert by_ds["sent_food"]["learning_rate"] == cfg["finetune"]["recipe"]["learning_rate"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["finetune"]["recipe"].update(method="qlora"), "finetune.recipe.method"),
        (lambda c: c["split"].pop("test"), "split"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (
            lambda c: c["datasets"]["nli_a"].update(task="translation"),
            "datasets.nli_a.task: unknown task 'translation'",
        ),
        (
            lambda c: c["datasets"]["nli_a"]["source"].update(adapter="xml"),
            "datasets.nli_a.source.adapter: unknown dataset adapter 'xml'",
        ),
        (lambda c: c["finetune"].update(train_on=["nope"]), "finetune.train_on: unknown dataset 'nope'"),
        (lambda c: c.update(tasks={"nli": {"type": "ranking"}}), "task 'nli'"),
        (lambda c: c["evaluate"].update(shots=[5]), "evaluate.shots"),
    ],
)
def test_bad_config_names_file_and_field(mutate, expected):
    cfg = copy.deepcopy(smoke_cfg())
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        Study(cfg, source="studies/bad.yaml")
    assert "studies/bad.yaml" in str(err.value)
    assert expected in str(err.value)


def test_param_slices_are_independent():
    """A rule's params depend only on its own slice: editing one dataset leaves others alone."""
    a = smoke_study()
    cfg = smoke_cfg()
    cfg["datasets"]["nli_b"]["split"] = {"test": 3}
    b = Study(cfg)
    assert a.dataset_params("nli_a") == b.dataset_params("nli_a")
    assert a.dataset_params("nli_b") != b.dataset_params("nli_b")
    assert a.eval_params("nli_a", 0, 0) == b.eval_params("nli_a", 0, 0)


def test_deepspeed_config_must_exist():
    cfg = smoke_cfg()
    cfg["finetune"]["recipe"]["deepspeed"] = "config/deepspeed/zero9.json"
    with pytest.raises(ConfigError, match="finetune.recipe.deepspeed: no DeepSpeed config"):
        Study(cfg)
    for name in ("zero2", "zero3", "zero3_offload"):
        cfg["finetune"]["recipe"]["deepspeed"] = str(REPO / f"config/deepspeed/{name}.json")
        json.loads((REPO / f"config/deepspeed/{name}.json").read_text())
        Study(cfg)


def test_a_two_way_dataset_prompt_names_only_its_labels():
    """RTE inside 3-way NLI: the prompt offers "entailment or contradiction", never "neutral"."""
    from ftgen.prompts import render_body

    cfg = smoke_cfg()
    cfg["datasets"]["nli_b"]["labels"] = ["entailment", "contradiction"]
    study = Study(cfg)
    inputs = {"premise": "p", "hypothesis": "h"}
    for fmt in (0, 1):
        two = render_body(study.prompt_params("nli_b"), fmt, inputs)
        three = render_body(study.prompt_params("nli_a"), fmt, inputs)
        assert "entailment or contradiction" in two and "neutral" not in two
        assert "entailment, neutral or contradiction" in three
    # a template that spells out a label the dataset never scores is refused
    cfg["tasks"] = {
        "nli": {**study.tasks["nli"], "prompts": {0: "{premise} {hypothesis} (entailment, neutral or contradiction):"}}
    }
    with pytest.raises(ConfigError, match=r"datasets.nli_b.labels: task 'nli' prompt 0 names \['neutral'\]"):
        Study(cfg)


def _src_keys_read(*modules) -> dict:
    """Per function of `modules`: the `src` keys it reads (`src["k"]`, `src.get("k")`) and the
    functions it passes `src` on to (the adapters' helpers: map_columns, load_hf_split, ...)."""
    import ast
    import inspect

    funcs = {}
    for module in modules:
        for node in ast.parse(inspect.getsource(module)).body:
            if isinstance(node, ast.FunctionDef):
                keys, calls = set(), set()
                for sub in ast.walk(node):
                    if (
                        isinstance(sub, ast.Subscript)
                        and getattr(sub.value, "id", None) == "src"
                        and isinstance(sub.slice, ast.Constant)
                    ):
                        keys.add(sub.slice.value)
                    if (
                        isinstance(sub, ast.Call)
                        and isinstance(sub.func, ast.Attribute)
                        and getattr(sub.func.value, "id", None) == "src"
                        and sub.func.attr == "get"
                    ):
                        keys.add(sub.args[0].value)
                    if (
                        isinstance(sub, ast.Call)
                        and isinstance(sub.func, ast.Name)
                        and any(
                            getattr(a, "id", None) == "src"
                            or (isinstance(a, ast.Dict) and any(getattr(v, "id", None) == "src" for v in a.values))
                            for a in sub.args
                        )
                    ):
                        calls.add(sub.func.id)
                funcs[node.name] = (keys, calls)

    def closure(name, seen):
        if name in seen or name not in funcs:
            return set()
        seen.add(name)
        keys, calls = funcs[name]
        return keys.union(*(closure(c, seen) for c in calls))

    return {name: closure(name, set()) for name in funcs}


def test_each_adapter_schema_lists_exactly_the_keys_its_reader_reads():
    """config.schema.yaml has one source schema per adapter (a misspelt key is an error naming
    the adapter): it must list what the reader (and `normalise`) reads, and nothing else."""
    from ftgen import corpus, data
    from ftgen.study.checks import ADAPTERS
    from ftgen.study.schema import load_schema, schema_keys

    root = load_schema("config.schema.yaml")
    branches = {
        b["if"]["properties"]["adapter"]["const"]: b["then"]["$ref"].split("/")[-1]
        for b in root["$defs"]["source"]["allOf"]
    }
    assert set(branches) == set(ADAPTERS) == set(data.ADAPTER_READERS)
    read = _src_keys_read(data, corpus)
    by_config = {"rag": {"corpus"}}  # read by Study (retrieval output), `k` is set from rag.k (not the user's)
    for adapter, reader in data.ADAPTER_READERS.items():
        declared = schema_keys(root["$defs"][branches[adapter]], root)
        wanted = (read[reader.__name__] | read["normalise"] | by_config.get(adapter, set())) - {"k"}
        assert wanted - declared == set(), f"{adapter}: read but not in the schema"
        assert declared - wanted - {"adapter", "asset"} == set(), f"{adapter}: in the schema but never read"
    corpus_branches = {b["if"]["properties"]["adapter"]["const"] for b in root["$defs"]["corpus_source"]["allOf"]}
    assert corpus_branches == set(corpus.CORPUS_READERS)
    assert set(root["$defs"]["corpus_source"]["properties"]["adapter"]["enum"]) == set(corpus.CORPUS_READERS)


def test_every_registry_dataset_and_the_judge_defaults_obey_the_schema():
    from ftgen.study.schema import REGISTRY_DIR, validate_schema

    for name, entry in load_yaml(REGISTRY_DIR / "datasets.yaml").items():
        validate_schema(
            entry,
            "config.schema.yaml",
            "datasets.yaml",
            definition="dataset",
            required=("task", "source"),
            prefix=f"datasets.{name}",
        )
    validate_schema(load_yaml(REGISTRY_DIR / "judge.yaml"), "config.schema.yaml", "judge.yaml", definition="judge")


def test_the_strict_loader_reads_anchors_merges_and_json(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\nl: [1, 2]\n")
    assert load_yaml(path) == {"base": {"x": 1, "y": 2}, "d": {"x": 3, "y": 2}, "l": [1, 2]}
    path.write_text('{"a": {"b": 1}, "c": [1]}')
    assert load_yaml(path) == {"a": {"b": 1}, "c": [1]}
    path.write_text('{"a": 1, "a": 2}')
    with pytest.raises(ConfigError, match=r"a.yaml:1: duplicate key 'a'"):
        load_yaml(path)


# ---------------------------------------------------------------- schema defaults, one place


def schema_defaults() -> dict[str, list]:
    """key -> the `default:` values the schema files give it (anywhere in them)."""
    from ftgen.study.schema import SCHEMA_DIR

    found: dict[str, list] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "default" in sub:
                    found.setdefault(key, []).append(sub["default"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in SCHEMA_DIR.glob("*.yaml"):
        walk(load_yaml(path))
    return found


def test_the_study_applies_the_schema_defaults():
    """Every default of the sections the planner reads is in `Study.config`; a value written in
    the file wins; partial layers (`finetune.overrides`, `resources.<group>`) get theirs once merged."""
    from ftgen.study.schema import load_schema

    root = load_schema("config.schema.yaml")
    smoke = Study(load_yaml(REPO / "config/studies/smoke.yaml"), source="smoke.yaml")
    for section in ("finetune", "evaluate"):
        for key, sub in root["properties"][section]["properties"].items():
            if "default" in sub:
                want = smoke.written[section].get(key, sub["default"])
                assert smoke.config[section][key] == want, f"{section}.{key}"
    assert smoke.config["results_dir"] == smoke.written.get("results_dir", "results")
    written = {"study": "d", **{k: v for k, v in smoke.written.items() if k not in ("results_dir", "cache_dir")}}
    bare = Study(written, source="bare")
    assert (bare.config["results_dir"], bare.config["cache_dir"]) == ("results", "data/cache")
    for key, sub in root["$defs"]["resources"]["properties"].items():
        if "default" in sub:
            assert bare.group_resources("tokenize")[key] == bare.written.get("resources", {}).get("tokenize", {}).get(
                key, bare.written.get("resources", {}).get("default", {}).get(key, sub["default"])
            )
    recipe = with_defaults({"method": "lora"}, definition="recipe")
    for key, sub in root["$defs"]["recipe"]["properties"].items():
        if "default" in sub:
            assert recipe[key] == sub["default"]
    override = {**smoke.written, "finetune": {**smoke.written["finetune"], "overrides": {"nli_a": {"epochs": 2}}}}
    assert Study(override, source="o").config["finetune"]["overrides"]["nli_a"] == {"epochs": 2}


@pytest.mark.parametrize("adapter", ["vader", "paraphrase_pairs", "squad", "hf", "csv"])
def test_a_sources_defaults_come_from_its_adapters_schema(adapter):
    from ftgen.study.schema import load_schema

    root = load_schema("config.schema.yaml")
    filled = with_defaults({"adapter": adapter}, definition="source")
    branch = root["$defs"][f"source_{adapter}"]
    own = {k: s["default"] for k, s in branch.get("properties", {}).items() if "default" in s}
    common = {k: s["default"] for k, s in root["$defs"]["normalise"]["properties"].items() if "default" in s}
    assert {**common, **own}.items() <= filled.items()
    other = (
        {
            k
            for a in ("vader", "squad", "paraphrase_pairs")
            if a != adapter
            for k in root["$defs"][f"source_{a}"]["properties"]
        }
        - set(branch.get("properties", {}))
        - set(common)
    )
    assert not other & set(filled), "another adapter's defaults were filled in"


def test_no_code_restates_a_schema_default():
    """`x.get("key", <the schema's default for key>)` anywhere in the package is a second copy of
    a default: read the filled value (`Study.config`, `with_defaults`) instead."""
    import ast

    defaults = schema_defaults()
    found = []
    for path in sorted((REPO / "src" / "ftgen").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in defaults
            ):
                try:
                    value = ast.literal_eval(node.args[1])
                except ValueError:
                    continue
                if any(
                    value == d and type(value) is type(d) or (value == d and isinstance(d, (int, float)))
                    for d in defaults[node.args[0].value]
                ):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: .get({node.args[0].value!r}, {value!r})")
    assert not found, "schema defaults restated in code:\n" + "\n".join(found)


# ----------------------------------------------------------------------------- RAG studies and API models
def test_rag_config_errors_are_caught_before_any_job():
    cfg = load_yaml(REPO / "config/studies/smoke-rag.yaml")
    cfg["datasets"]["rag_zoo"]["source"]["corpus"] = "atlantis"
    with pytest.raises(ConfigError, match="unknown corpus 'atlantis'"):
        Study(cfg, source="x.yaml")
    cfg = load_yaml(REPO / "config/studies/smoke-rag.yaml")
    cfg["rag"]["corpora"]["zoo"]["retriever"] = "dense"  # not built (retrievers: [bm25])
    with pytest.raises(ConfigError, match="is not in rag.retrievers"):
        Study(cfg, source="x.yaml")
    cfg = load_yaml(REPO / "config/studies/smoke-rag.yaml")
    cfg["judge"]["model"] = "gpt-5"
    with pytest.raises(ConfigError, match="judge.model"):
        Study(cfg, source="x.yaml")


def test_a_study_scores_an_api_model_only_as_itself():
    cfg = load_yaml(REPO / "config/studies/barnett2024.yaml")
    study = Study(copy.deepcopy(cfg))
    gpt = [m for m in study.model_names if study.is_api(m)]
    assert gpt == ["gpt4"], "barnett2024 has GPT-4 as an un-fine-tuned baseline, as in the paper"
    cells = study.cells_for("gpt4")
    assert cells and {c.model_tag for c in cells} == {"base"}
    assert len(study.cells_for("mixtral")) > len(cells)
    spec = study.eval_params(cells[0].dataset, 0, 0, "gpt4")
    assert spec["api"]["name"] == "gpt-4" and "OPENAI_API_KEY" == spec["api"]["api_key_env"]
    assert "api" not in study.eval_params(cells[0].dataset, 0, 0, "mixtral")
    cfg["datasets"]["sst2"] = {"task": "sentiment", "source": {"adapter": "jsonl", "path": "x.jsonl"}}
    with pytest.raises(ConfigError, match="'gpt4' is an API model .* scores \\['sst2'\\] by log-likelihood"):
        Study(cfg)


def test_configfiles_merge_as_snakemake_merges_them():
    """`ftgen estimate/preflight --configfile A B` read the study `snakemake --configfile A B` runs
    (snakemake.utils.update_config, which Snakemake applies to its config files in order)."""
    from snakemake.utils import update_config

    files = [
        str(REPO / "benchmarks/config/throughput_offline.yaml"),
        str(REPO / "benchmarks/config/eval_grid_offline.yaml"),
    ]
    merged: dict = {}
    for path in files:
        update_config(merged, load_yaml(path))
    (study,) = load_studies(files)
    assert study.config == Study(merged).config and study.name == "eval_grid_offline"
    assert study.source == ", ".join(files)
    assert study.evaluate["formats"] == [0, 1] and study.evaluate["shots"] == [0, 2]  # the overlay's
    assert [s.name for s in load_studies([str(REPO / "config/hpc.yaml")])] == ["yang2024", "barnett2024", "gupta2025"]
