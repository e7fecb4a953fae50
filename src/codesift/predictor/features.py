"""What a predictor sees of a block: hashed token n-grams (model-free), hand-made text features,
and a frozen model's mean-pooled hidden states with the block's own loss (model-aware)."""

from __future__ import annotations

import re

import numpy as np

from ..modeling import block_losses
from ..ngrams import hashed_ngrams
from .labels import PredictorError

# Imported inside the functions that use them (heavy or optional): scipy, torch, transformers.

HAND_FEATURES = (
    "distinct_token_share",
    "mean_line_length",
    "long_line_share",
    "blank_line_share",
    "comment_line_share",
    "docstring_line_share",
    "def_line_share",
    "test_line_share",
    "import_line_share",
    "indent_depth",
    "digit_share",
    "upper_share",
    "symbol_share",
)


def ngram_matrix(input_ids: list[list[int]], orders=(1, 2), hash_bits: int = 18):
    """Rows of hashed n-gram counts, log1p-damped and L2-normalised (a scipy CSR matrix)."""
    from scipy import sparse

    buckets = [hashed_ngrams(ids, orders, hash_bits) for ids in input_ids]
    cols = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(buckets)), [len(b) for b in buckets])
    matrix = sparse.csr_matrix(
        (np.ones(len(cols)), (rows, cols)), shape=(len(input_ids), 1 << hash_bits)
    )  # duplicates are summed: counts
    matrix.data = np.log1p(matrix.data)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    return sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ matrix


def hand_features(texts: list[str], input_ids: list[list[int]]) -> np.ndarray:
    """One row of HAND_FEATURES per block: shares of kinds of lines and characters."""
    return np.array([_hand_row(text, ids) for text, ids in zip(texts, input_ids, strict=True)])


def _hand_row(text: str, ids) -> list[float]:
    lines = text.split("\n") or [""]
    stripped = [line.strip() for line in lines]
    n_lines, n_chars = len(lines), max(1, len(text))
    in_docstring, docstring_lines = False, 0
    for line in stripped:
        quotes = line.count('"""') + line.count("'''")
        if in_docstring or quotes:
            docstring_lines += 1
        if quotes % 2:
            in_docstring = not in_docstring

    def share(predicate) -> float:
        return sum(1 for line in stripped if predicate(line)) / n_lines

    return [
        len(set(ids)) / max(1, len(ids)),
        float(np.mean([len(line) for line in lines])),
        share(lambda s: len(s) > 79),
        share(lambda s: not s),
        share(lambda s: s.startswith(("#", "//", "/*", "*"))),
        docstring_lines / n_lines,
        share(lambda s: s.startswith(("def ", "class ", "async def "))),
        share(lambda s: s.startswith(("assert", "self.assert")) or "test" in s.split("(")[0].lower()),
        share(lambda s: s.startswith(("import ", "from ", "#include"))),
        float(np.mean([len(line) - len(line.lstrip()) for line in lines])),
        sum(c.isdigit() for c in text) / n_chars,
        sum(c.isupper() for c in text) / n_chars,
        len(re.findall(r"[^\w\s]", text)) / n_chars,
    ]


_ENCODERS: dict[tuple, FrozenEncoder] = {}
MEMO_LIMIT = 50_000  # blocks whose embeddings an encoder keeps


def frozen_encoder(name_or_path: str, blocks_tokenizer, max_length: int = 512) -> FrozenEncoder:
    """One FrozenEncoder per model and context length in this process: the learning curve and the
    benchmark refit many predictors on the same blocks, and each block is embedded once."""
    from ..provenance import path_stamp

    key = (
        str(name_or_path),
        path_stamp(name_or_path),
        len(blocks_tokenizer),
        max_length,
    )  # a retrained model is new
    if key not in _ENCODERS:
        _ENCODERS[key] = FrozenEncoder(name_or_path, blocks_tokenizer, max_length)
    return _ENCODERS[key]


def clear_caches() -> None:
    """Forget every encoder's remembered embeddings (so a timed run pays for all its forwards)."""
    for encoder in _ENCODERS.values():
        encoder.memo.clear()


class FrozenEncoder:
    """Mean-pooled hidden states of every layer of a frozen model, concatenated.

    The LM checkpoint (a causal LM on the blocks' own tokenizer) reads the block's ids directly and
    also gives the block's own loss; any other encoder (a Hub id such as bert-base-uncased) reads the
    block's text with its own tokenizer, cut into chunks of its context and mean-pooled, as MATES
    does with 2 x 512-token chunks."""

    def __init__(self, name_or_path: str, blocks_tokenizer, max_length: int = 512, device=None):
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        config = AutoConfig.from_pretrained(name_or_path)
        own_tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        self.shares_tokenizer = same_vocabulary(own_tokenizer, blocks_tokenizer)
        self.causal = self.shares_tokenizer and any(
            a.endswith("ForCausalLM") for a in config.architectures or []
        )
        if self.causal:
            self.model = AutoModelForCausalLM.from_pretrained(name_or_path)
        else:
            self.model = AutoModel.from_pretrained(name_or_path)
        self.model.to(self.device).eval()
        self.blocks_tokenizer, self.tokenizer = blocks_tokenizer, own_tokenizer
        context = getattr(config, "max_position_embeddings", max_length)
        self.max_length = min(max_length, context)
        self.name = name_or_path
        self.memo: dict[bytes, tuple[np.ndarray, float | None]] = {}

    def embed(
        self, input_ids: list[list[int]], with_loss: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(embeddings, the block's own loss or None) for a batch of blocks; a block seen before
        (the same ids) is not run again, so refitting on the same labels costs no forward passes.
        Without `with_loss` the LM's output layer is skipped (over half its cost at this size)."""
        with_loss = with_loss and self.causal
        keys = [np.asarray(ids, dtype=np.int64).tobytes() + bytes([with_loss]) for ids in input_ids]
        found = {k: self.memo[k] for k in keys if k in self.memo}
        fresh = list(dict.fromkeys(k for k in keys if k not in found))
        if fresh:
            embeddings, losses = self._embed_new([input_ids[keys.index(k)] for k in fresh], with_loss)
            for j, key in enumerate(fresh):
                found[key] = (embeddings[j], None if losses is None else float(losses[j]))
            if len(self.memo) + len(fresh) > MEMO_LIMIT:  # predicting a large pool: nothing is seen twice
                self.memo.clear()
            self.memo.update({k: found[k] for k in fresh})
        losses = [found[k][1] for k in keys]
        return np.stack([found[k][0] for k in keys]), (None if losses[0] is None else np.asarray(losses))

    def _embed_new(self, input_ids, with_loss: bool):
        if self.causal:
            return self._embed_causal(input_ids, with_loss)
        if self.shares_tokenizer:
            return self._embed_chunks([list(ids) for ids in input_ids]), None
        texts = self.blocks_tokenizer.batch_decode(input_ids)
        ids = [self.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts]
        return self._embed_chunks(ids), None

    def _embed_causal(self, input_ids, with_loss: bool):
        import torch

        ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long, device=self.device)
        if int(ids.max()) >= self.model.config.vocab_size:
            raise PredictorError(f"{self.name}: block token id {int(ids.max())} is outside its vocabulary")
        with torch.no_grad():
            if not with_loss:  # the body only: its hidden states are the same
                out = self.model.base_model(input_ids=ids, output_hidden_states=True)
                return torch.cat(
                    [h.float().mean(dim=1) for h in out.hidden_states], dim=1
                ).cpu().numpy(), None
            out = self.model(input_ids=ids, output_hidden_states=True)
            pooled = torch.cat([h.float().mean(dim=1) for h in out.hidden_states], dim=1)
            losses = block_losses(out.logits, ids)
        return pooled.cpu().numpy(), losses.cpu().numpy()

    def _embed_chunks(self, token_lists: list[list[int]]) -> np.ndarray:
        import torch

        chunks, owner = chunk_tokens(
            token_lists, self.tokenizer, self.max_length, special=not self.shares_tokenizer
        )
        width = max(len(c) for c in chunks)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(chunks), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunks), width), dtype=torch.long)
        for i, chunk in enumerate(chunks):
            ids[i, : len(chunk)], mask[i, : len(chunk)] = torch.tensor(chunk), 1
        with torch.no_grad():
            out = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), output_hidden_states=True
            )
        weights = mask.to(self.device).unsqueeze(-1).float()
        pooled = torch.cat([(h.float() * weights).sum(1) / weights.sum(1) for h in out.hidden_states], dim=1)
        pooled = pooled.cpu().numpy()
        return mean_by_owner(pooled, np.asarray(owner), len(token_lists))


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a text (BERT: [CLS] and [SEP])."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    start = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
    return full[:start], full[start + len(plain) :]


def chunk_tokens(token_lists, tokenizer, max_length: int, special: bool = True):
    """([ids of each chunk, with the tokenizer's special tokens], [the list each chunk came from]):
    every list cut into pieces that fit `max_length`."""
    prefix, suffix = special_tokens(tokenizer) if special else ([], [])
    room = max_length - len(prefix) - len(suffix)
    chunks, owner = [], []
    for index, ids in enumerate(token_lists):
        for start in range(0, max(1, len(ids)), room):
            chunks.append(prefix + list(ids[start : start + room]) + suffix)
            owner.append(index)
    return chunks, owner


def mean_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Row i of the result: the mean of the rows of `values` whose owner is i (chunks -> blocks)."""
    values = values.reshape(len(owner), -1)
    sums = np.zeros((n, values.shape[1]))
    np.add.at(sums, owner, values)
    return sums / np.bincount(owner, minlength=n)[:, None]


def same_vocabulary(first, second) -> bool:
    """Two tokenizers map the same strings to the same ids (so ids can be shared, not re-tokenized)."""
    return len(first) == len(second) and first.get_vocab() == second.get_vocab()
