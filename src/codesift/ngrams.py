"""Hashed token n-grams, shared by the predictor's n-gram features (stage 05) and DSIR (stage 04)."""

from __future__ import annotations

import numpy as np

_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads id tuples over the buckets


def hashed_ngrams(ids, orders=(1, 2), hash_bits: int = 18) -> np.ndarray:
    """The bucket (0 .. 2**hash_bits - 1) of every n-gram of one token sequence, one per occurrence."""
    ids = np.asarray(ids, dtype=np.uint64)
    shift = np.uint64(64 - hash_bits)
    found = []
    with np.errstate(over="ignore"):  # the hash wraps around by design
        for order in orders:
            if len(ids) < order:
                continue
            code = np.full(len(ids) - order + 1, np.uint64(order))
            for offset in range(order):
                code = (
                    code * np.uint64(1_000_003) + ids[offset : len(ids) - order + 1 + offset]
                ) * _MULTIPLIER
            found.append((code >> shift).astype(np.int64))
    return np.concatenate(found) if found else np.zeros(0, np.int64)
