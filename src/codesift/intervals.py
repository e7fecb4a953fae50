"""Means with their 95% t-intervals over a handful of seeds: the results tables, the pretraining-on-
selected-data runs and their figures all say "mean ± half-width" the same way."""

from __future__ import annotations

import numpy as np

# Student t 0.975 quantiles for 1..30 degrees of freedom (beyond: 1.96).
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def mean_and_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan with one value)."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), float("nan")
    df = len(values) - 1
    t = T_975[df - 1] if df <= len(T_975) else 1.96
    return float(values.mean()), float(t * values.std(ddof=1) / np.sqrt(len(values)))


def format_interval(mean_ci, signed: bool = False, digits: int = 3) -> str:
    """ "mean ± half-width" as every table writes it: "-" without a mean, the mean alone without an
    interval (one seed); `signed` for differences (+0.070)."""
    mean, ci = mean_ci
    if mean is None or not np.isfinite(mean):
        return "-"
    text = f"{mean:{'+' if signed else ''}.{digits}f}"
    return text if ci is None or not np.isfinite(ci) else f"{text} ± {ci:.{digits}f}"
