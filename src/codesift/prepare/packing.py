"""Packing documents into fixed-length blocks, the unit of training and of selection (as in MATES)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from ..errors import CodesiftError
from ..utils import stable_seed


class BlockPacker:
    """Joins documents with EOS into one stream and cuts it into blocks of exactly `seq_len`.

    Every token of every document lands in exactly one block, in order, except the final partial
    block (`tail`), which is dropped and counted rather than padded.
    """

    def __init__(self, seq_len: int, eos_token_id: int):
        if seq_len < 2:
            raise CodesiftError(f"seq_len must be at least 2, got {seq_len}")
        self.seq_len, self.eos = seq_len, eos_token_id
        self.buffer: list[int] = []
        self.buffer_docs: list[str] = []
        self.buffer_languages: Counter = Counter()
        self.next_block_id = 0

    def add(
        self, doc_id: str, input_ids: list[int], language: str | None = None, skip: int = 0
    ) -> Iterator[dict]:
        """Append one document (and its EOS), less its first `skip` tokens; yield every block it
        completes. With `language`, each block also carries the language of most of its tokens
        (the first on a tie)."""
        stream = (list(input_ids) + [self.eos])[skip:]
        start = 0
        while start < len(stream):
            take = min(self.seq_len - len(self.buffer), len(stream) - start)
            self.buffer.extend(stream[start : start + take])
            self.buffer_languages[language] += take
            if not self.buffer_docs or self.buffer_docs[-1] != doc_id:
                self.buffer_docs.append(doc_id)
            start += take
            if len(self.buffer) == self.seq_len:
                block = {
                    "block_id": self.next_block_id,
                    "input_ids": self.buffer,
                    "doc_ids": self.buffer_docs,
                }
                if language is not None:
                    block["language"] = self.buffer_languages.most_common(1)[0][0]
                yield block
                self.next_block_id += 1
                self.buffer, self.buffer_docs, self.buffer_languages = [], [], Counter()

    @property
    def tail(self) -> int:
        """Tokens left over after the last full block (dropped)."""
        return len(self.buffer)


def pack_documents(documents: Iterable[tuple[str, list[int]]], seq_len: int, eos_token_id: int):
    """All blocks of `(doc_id, input_ids)` pairs, and the number of tail tokens dropped."""
    packer = BlockPacker(seq_len, eos_token_id)
    blocks = [block for doc_id, ids in documents for block in packer.add(doc_id, ids)]
    return blocks, packer.tail


def stream_starts(token_counts: list[int]) -> list[int]:
    """Where each shard's tokens (its documents, each with its EOS) start in the one stream of all
    shards in rank order; the total last."""
    return list(itertools.accumulate(token_counts, initial=0))


def pack_slice(
    shard_rows: Callable[[int], Iterable[dict]],
    rank: int,
    token_counts: list[int],
    seq_len: int,
    eos_token_id: int,
) -> Iterator[dict]:
    """The blocks of the one stream that start inside shard `rank` (the last may end in a later
    shard), from the shards' token counts alone: task r skips to its first block boundary and packs
    on. Concatenated in rank order, the tasks' blocks are one packer's over all shards: the same ids,
    tokens, documents and languages, so packing runs in as many tasks as tokenizing did."""
    starts = stream_starts(token_counts)
    first, stop = -(-starts[rank] // seq_len), -(-starts[rank + 1] // seq_len)
    if first >= stop:
        return
    packer = BlockPacker(seq_len, eos_token_id)
    packer.next_block_id = first
    skip = first * seq_len - starts[rank]  # tokens of a block that started in an earlier shard
    for shard in range(rank, len(token_counts)):
        for row in shard_rows(shard):
            length = len(row["input_ids"]) + 1
            if skip >= length:
                skip -= length
                continue
            for block in packer.add(row["doc_id"], row["input_ids"], row.get("language"), skip=skip):
                yield block
                if block["block_id"] + 1 >= stop:
                    return
            skip = 0


def split_train_candidates(n_blocks: int, num_candidates: int, seed: int) -> tuple[list[int], list[int]]:
    """Seeded, disjoint block indices: the training part and the candidate pool scored later."""
    if not 0 < num_candidates < n_blocks:
        raise CodesiftError(
            f"num_candidates={num_candidates} must be between 1 and the number of blocks - 1 "
            f"({n_blocks} blocks were packed); lower it or add documents"
        )
    order = list(range(n_blocks))
    random.Random(stable_seed(seed, "candidates")).shuffle(order)
    return sorted(order[num_candidates:]), sorted(order[:num_candidates])
