"""Packed (padding-free) training: examples in one row must not see each other, and the
target-only loss must equal the model's own loss on the same padded batch."""

import torch
from test_model_train_eval import RECIPE, _train  # noqa: F401  (fixtures come from conftest)
from test_model_train_eval import examples  # noqa: F401
from transformers import DataCollatorForSeq2Seq

from ftgen.modeling import load_model, load_tokenizer
from ftgen.train import PackingCollator, TargetLogitsTrainer

ROWS = [
    {"input_ids": [5, 9, 14, 22, 31, 7], "labels": [-100, -100, -100, 22, 31, 7]},
    {"input_ids": [40, 3, 18], "labels": [-100, 3, 18]},
    {"input_ids": [11, 12, 13, 14, 15, 16, 17, 2], "labels": [-100, -100, -100, -100, -100, 16, 17, 2]},
]


def test_packed_examples_do_not_see_each_other(tiny_model):
    model = load_model(tiny_model)
    packed = PackingCollator(pad_id=0)(ROWS)  # one row, longest example first
    order = sorted(ROWS, key=lambda r: -len(r["input_ids"]))
    assert packed["input_ids"].shape == (1, 17)
    with torch.no_grad():
        # use_cache=False as in training (finetune sets it): with a cache transformers does not isolate
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
        start = 0
        for row in order:
            alone = model(input_ids=torch.tensor([row["input_ids"]])).logits[0]
            n = len(row["input_ids"])
            torch.testing.assert_close(logits[start:start + n], alone, rtol=1e-4, atol=1e-5)
            start += n
        # without restarting positions the model treats the row as one sequence: the test can fail
        leaky = model(input_ids=packed["input_ids"], use_cache=False).logits[0]
        assert not torch.allclose(leaky[8:], logits[8:], atol=1e-4)


def test_rows_are_bounded_and_padded_apart():
    batch = PackingCollator(pad_id=0, row_tokens=10)(ROWS)  # 8 | 6 + 3 -> two rows of width 9
    assert batch["input_ids"].shape == (2, 9)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 7, 0], [0, 1, 2, 3, 4, 5, 0, 1, 2]]
    assert batch["labels"][0].tolist() == [-100, -100, -100, -100, -100, 16, 17, 2, -100]
    assert batch["labels"][1].tolist() == [-100, -100, -100, 22, 31, 7, -100, 3, 18]


class _Args:
    average_tokens_across_devices = False


def test_target_only_loss_equals_model_loss_on_padded_batch(tiny_model):
    model = load_model(tiny_model)
    tok = load_tokenizer(tiny_model, padding_side="right")
    padded = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)([dict(r) for r in ROWS])
    packed = PackingCollator(tok.pad_token_id)(ROWS)
    rows = PackingCollator(tok.pad_token_id, row_tokens=10)(ROWS)
    n_targets = sum(sum(t != -100 for t in r["labels"][1:]) for r in ROWS)
    trainer = TargetLogitsTrainer()
    trainer.args = _Args()
    with torch.no_grad():
        reference = model(**padded).loss  # the model's mean over target tokens
        ours = trainer.compute_loss(model, dict(packed), num_items_in_batch=torch.tensor(n_targets))
        ours_no_count = trainer.compute_loss(model, dict(packed))
        in_rows = trainer.compute_loss(model, dict(rows), num_items_in_batch=torch.tensor(n_targets))
    for loss in (ours, ours_no_count, in_rows):
        torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)


def test_packed_training_learns_like_padded_training(tiny_model, examples, tmp_path):  # noqa: F811
    """Through `finetune` (Trainer, loss normalisation by `num_items_in_batch`): same examples and
    steps, the packed runs end at the padded run's loss up to float noise (5e-7 measured). Attention
    isolation is checked by the logits and loss tests above (the random tiny model's loss barely
    depends on attention)."""
    import json

    padded = _train(tiny_model, examples, tmp_path, "padded")
    for name, extra in {"packed": {}, "rows": {"packing_row_tokens": 32}, "all_logits": {"target_logits_only": False}}.items():
        packed = _train(tiny_model, examples, tmp_path, name, {**RECIPE, "packing": True, **extra})
        lp, lk = (json.loads((d / "manifest.json").read_text())["train_loss"] for d in (padded, packed))
        assert abs(lp - lk) < 1e-4, (name, lp, lk)


def test_bf16_frozen_weights_keep_fp32_adapters(tiny_model, examples, tmp_path):  # noqa: F811
    """LoRA with bf16 on: base weights stored in bf16, the trained adapter saved in fp32."""
    import json

    from safetensors.torch import load_file

    recipe = {**RECIPE, "bf16": True, "packing": True, "bf16_frozen_weights": True}
    out = _train(tiny_model, examples, tmp_path, "frozen_bf16", recipe)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["frozen_weights_bf16"] is True and manifest["bf16"] is True
    weights = load_file(out / "adapter_model.safetensors")
    assert weights and all(w.dtype == torch.float32 for w in weights.values())
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k), "LoRA did not train"
