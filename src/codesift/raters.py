"""Model-rated quality, the LLM / classifier baselines of stage 06 (QuRating, FineWeb-Edu and
Stack-Edu style): every candidate block gets one number from a Hub model, by id or folder.

- `lm`: a causal LM reads a rating prompt around the block's text and answers; the score is
  log P(yes) - log P(no) for its next token (QuRating asks pairwise; one question is enough for a
  baseline).
- `classifier`: a sequence classifier (FineWeb-Edu's and Stack-Edu's are regressions with one
  output): the score is that output, or the expected class index when it has several labels.

The blocks are token ids under the corpus tokenizer; they are decoded to text and re-tokenized
with the rater's own tokenizer, truncated to `max_length` tokens (the prompt's tail is kept).
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .errors import CodesiftError

# Imported inside the functions that use them (heavy or optional): torch, transformers.

RATER_KINDS = ("lm", "classifier")
DEFAULT_PROMPT = (
    "Below is an extract of source code. Is it educational and of high quality, the kind of code a "
    "student should learn from? Answer yes or no.\n\n{text}\n\nAnswer:"
)


class RaterError(CodesiftError):
    """A rater that cannot score: unknown kind, a model of the wrong type, no answer tokens."""


def load_rater(name_or_path: str, kind: str):
    """(model, tokenizer) for a rater by Hub id or folder, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if kind not in RATER_KINDS:
        raise RaterError(f"rater kind {kind!r}: use one of {RATER_KINDS}")
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    loader = AutoModelForCausalLM if kind == "lm" else AutoModelForSequenceClassification
    model = loader.from_pretrained(name_or_path)
    if kind == "classifier" and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id  # batched sequence classification needs it
    return model.eval(), tokenizer


def answer_token_ids(tokenizer, answers=(" yes", " no")) -> tuple[int, int]:
    """The first token of each answer (what the LM would say next)."""
    ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
    if not all(ids):
        raise RaterError(f"the rater's tokenizer encodes {answers} as nothing")
    yes, no = ids[0][0], ids[1][0]
    if yes == no:
        raise RaterError(f"{answers} start with the same token; the rater cannot tell them apart")
    return yes, no


def lm_ratings(
    model, tokenizer, texts: list[str], prompt: str, max_length: int, batch_size: int
) -> np.ndarray:
    """log P(" yes") - log P(" no") after each prompt, left-padded so the last position is the answer's."""
    import torch

    yes, no = answer_token_ids(tokenizer)
    tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
    values = []
    for start in tqdm(range(0, len(texts), batch_size), desc="rating (lm)", unit="batch"):
        batch = [prompt.format(text=t) for t in texts[start : start + batch_size]]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        with torch.no_grad():
            logits = model(**encoded).logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        values.extend((logprobs[:, yes] - logprobs[:, no]).tolist())
    return np.asarray(values, dtype=np.float64)


def classifier_ratings(model, tokenizer, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
    """The classifier's regression output, or its expected class index."""
    import torch

    tokenizer.truncation_side = "right"
    values = []
    for start in tqdm(range(0, len(texts), batch_size), desc="rating (classifier)", unit="batch"):
        encoded = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        with torch.no_grad():
            logits = model(**encoded).logits.float()
        if logits.shape[-1] == 1:
            values.extend(logits[:, 0].tolist())
        else:
            probs = torch.softmax(logits, dim=-1)
            values.extend((probs * torch.arange(logits.shape[-1])).sum(-1).tolist())
    return np.asarray(values, dtype=np.float64)


def rate_blocks(
    input_ids,
    block_tokenizer,
    rater: str,
    kind: str = "classifier",
    prompt: str = DEFAULT_PROMPT,
    max_length: int = 512,
    batch_size: int = 8,
) -> np.ndarray:
    """One rating per block (higher = better by the rater)."""
    texts = block_tokenizer.batch_decode([list(ids) for ids in input_ids], skip_special_tokens=True)
    model, tokenizer = load_rater(rater, kind)
    if kind == "lm":
        if "{text}" not in prompt:
            raise RaterError("the rater prompt needs a {text} placeholder for the block")
        return lm_ratings(model, tokenizer, texts, prompt, max_length, batch_size)
    return classifier_ratings(model, tokenizer, texts, max_length, batch_size)
