"""Llama-style code models built from scratch with `LlamaConfig` + `LlamaForCausalLM` (stage 02).

Presets:
- `tiny`: 2.9M parameters with an 8k vocabulary (hidden 128, 4 layers, 4 heads, 2 KV heads,
  FFN 384, context 256); trains on two CPU cores.
- `codellm-1b`: about 1.1B parameters. ASSUMED shape, following TinyLlama (the paper's own model
  shape is not available to us): 22 layers x 2048 hidden, 32 heads, 4 KV heads, FFN 5632,
  context 2048, with the vocabulary of the recipe's tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .generation import generate_completions

# Imported inside the functions that use them (heavy or optional): torch, transformers.

MODEL_PRESETS: dict[str, dict] = {
    "tiny": {
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 384,
        "max_position_embeddings": 256,
    },
    "codellm-1b": {  # assumed, following TinyLlama-1.1B
        "hidden_size": 2048,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "intermediate_size": 5632,
        "max_position_embeddings": 2048,
    },
}
ASSUMED_PRESETS = {
    "codellm-1b": "shape assumed, following TinyLlama-1.1B; the paper's is not available to us"
}


@dataclass
class VocabSpec:
    """What `build_model_config` reads from a tokenizer: enough to size a model without one."""

    size: int
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0

    def __len__(self) -> int:
        return self.size


def build_model_config(preset: str, tokenizer, overrides: dict | None = None):
    """A `LlamaConfig` from a preset, the tokenizer's vocabulary and special tokens, and overrides."""
    from transformers import LlamaConfig

    if preset not in MODEL_PRESETS:
        raise ConfigError(f"unknown model preset {preset!r}; presets: {', '.join(MODEL_PRESETS)}")
    fields = {
        **MODEL_PRESETS[preset],
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        **(overrides or {}),
    }
    unknown = [key for key in overrides or {} if not hasattr(LlamaConfig(), key)]
    if unknown:
        raise ConfigError(f"model_overrides has keys LlamaConfig does not know: {unknown}")
    return LlamaConfig(**fields)


def count_parameters(config) -> int:
    """Parameters of a model built from `config`, counted on the meta device (no memory used)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_model(config, seed: int):
    """A freshly initialised model; the seed fixes the initial weights."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def greedy_completion(model, tokenizer, prompt: str, max_new_tokens: int = 64) -> str:
    """The model's greedy continuation of `prompt` (the prompt cut from the left to fit the context),
    not cut at any stop sequence."""
    return generate_completions(model, tokenizer, [prompt], max_new_tokens, stops=())[0][0]


def block_losses(logits, input_ids):
    """Each block's mean next-token loss (the Trainer's loss at batch 1) from a forward's logits,
    float32 and without copying them: the one definition the scorer, the perplexity baseline and
    the predictor's features share."""
    import torch.nn.functional as F

    labels = F.pad(input_ids[:, 1:], (0, 1), value=-100)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), reduction="none")
    return nll.view(input_ids.shape).sum(1) / (input_ids.shape[1] - 1)
