"""Tokenizer: a byte-level BPE trained on the corpus, or a Hub tokenizer by id (stage 01)."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import CodesiftError

# Imported inside the functions that use them (heavy or optional): tokenizers, transformers.

BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<s>", "</s>", "<pad>"


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, model_max_length: int, length: int | None = None
):
    """A byte-level BPE (any byte sequence encodes, nothing is <unk>) trained on `texts`,
    wrapped as a transformers fast tokenizer so `save_pretrained`/`AutoTokenizer` work."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    bpe.train_from_iterator(texts, trainer=trainer, length=length)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(name_or_path: str):
    """A tokenizer from a local folder or a Hub id; a pad token is added as EOS when missing."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.eos_token_id is None:
        raise CodesiftError(
            f"tokenizer {name_or_path!r} has no EOS token, which packing needs between documents"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
