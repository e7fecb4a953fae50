"""Data selection by importance resampling (DSIR, Xie et al. 2023): a model-free targeted baseline.

Hashed n-grams of the target tasks' text and of the candidate pool each fit a bag-of-n-grams
(multinomial) model with add-one smoothing; a candidate's log importance weight is the sum, over its
n-grams, of log p_target(b) - log p_pool(b); k candidates are resampled without replacement with
probabilities proportional to their weights (Gumbel-top-k on the log weights). The paper hashes word
unigrams and bigrams of text into 10,000 buckets; here the n-grams are the tokenizer's ids of the
blocks and of the tasks' tokenized problems (the same tokenizer), hashed into 2**hash_bits buckets.
"""

from __future__ import annotations

import numpy as np

from .ngrams import hashed_ngrams


def bucket_counts(sequences, orders=(1, 2), hash_bits: int = 14) -> np.ndarray:
    """Summed n-gram bucket counts over all sequences (a vector of 2**hash_bits)."""
    buckets = [hashed_ngrams(ids, orders, hash_bits) for ids in sequences]
    found = np.concatenate(buckets) if buckets else np.zeros(0, np.int64)
    return np.bincount(found, minlength=1 << hash_bits).astype(np.float64)


def log_model(counts: np.ndarray) -> np.ndarray:
    """Log probabilities of a bag-of-n-grams model with add-one smoothing."""
    smoothed = counts + 1.0
    return np.log(smoothed / smoothed.sum())


def importance_log_weights(pool, targets, orders=(1, 2), hash_bits: int = 14) -> np.ndarray:
    """log w(x) = sum over x's n-grams of log p_target - log p_pool, for every pool sequence."""
    ratio = log_model(bucket_counts(targets, orders, hash_bits)) - log_model(
        bucket_counts(pool, orders, hash_bits)
    )
    return np.array([ratio[hashed_ngrams(ids, orders, hash_bits)].sum() for ids in pool])


def resample(log_weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k indices drawn without replacement with probability proportional to exp(log_weights)."""
    keys = np.asarray(log_weights, dtype=np.float64) + np.random.default_rng(seed).gumbel(
        size=len(log_weights)
    )
    return np.sort(np.argsort(-keys, kind="stable")[:k])
