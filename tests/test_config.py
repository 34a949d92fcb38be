import copy
import json

import pytest
from conftest import REPO, smoke_study

from ftgen.config import ConfigError, FineTune, Study, load_yaml


def smoke_cfg():
    return load_yaml(REPO / "config/studies/smoke.yaml")


def test_default_and_study_configs_resolve():
    default = Study(load_yaml(REPO / "config/config.yaml"), source="config.yaml")
    assert default.name == "default"
    tasks = {default.datasets[d]["task"] for d in default.finetune_cfg["train_on"]}
    assert tasks == {"sentiment", "nli", "question_generation"}
    # every training task has >= 2 evaluation domains (cross-domain cells exist)
    for task in tasks:
        assert sum(default.datasets[d]["task"] == task for d in default.eval_datasets) >= 2
    assert len(default.eval_cells) == (1 + len(default.finetunes)) * sum(len(default.shots_for(d)) for d in default.eval_datasets)
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
        (lambda c: c["datasets"]["nli_a"].update(task="translation"), "datasets.nli_a.task: unknown task 'translation'"),
        (lambda c: c["datasets"]["nli_a"]["source"].update(adapter="xml"), "datasets.nli_a.source.adapter: unknown dataset adapter 'xml'"),
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
    cfg["tasks"] = {"nli": {**study.tasks["nli"], "prompts": {0: "{premise} {hypothesis} (entailment, neutral or contradiction):"}}}
    with pytest.raises(ConfigError, match=r"datasets.nli_b.labels: task 'nli' prompt 0 names \['neutral'\]"):
        Study(cfg)
