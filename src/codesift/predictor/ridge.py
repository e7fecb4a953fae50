"""Closed-form ridge on several feature groups at once, as a sum of linear kernels.

Each group (hashed n-grams, hand features, embeddings) gives a centred linear kernel scaled to unit
mean diagonal; the head is kernel ridge on their weighted sum. Leave-one-out errors come free from
one eigendecomposition per weighting, so the group weights and one ridge strength per task are
chosen on the training labels alone. The fitted head is kept in primal form (one weight vector per
group and task), so predicting a block costs one sparse or dense dot product per group.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

RELATIVE_WEIGHTS = (0.0, 0.25, 1.0, 4.0)  # each further group's weight relative to the first


@dataclass
class RidgeHead:
    groups: list[str]
    weights: dict[str, np.ndarray]  # group -> (features, tasks)
    intercept: np.ndarray  # (tasks,)
    dense_mean: dict[str, np.ndarray] = field(default_factory=dict)
    dense_std: dict[str, np.ndarray] = field(default_factory=dict)
    alphas: list[float] = field(default_factory=list)
    group_weights: dict[str, float] = field(default_factory=dict)
    loo_mse: float = float("nan")

    def predict(self, features: dict) -> np.ndarray:
        out = np.zeros((features[self.groups[0]].shape[0], len(self.intercept)))
        for group in self.groups:
            out += np.asarray(self._prepare(group, features[group]) @ self.weights[group])
        return out + self.intercept

    def _prepare(self, group, matrix):
        if group in self.dense_mean:
            return (np.asarray(matrix, dtype=np.float64) - self.dense_mean[group]) / self.dense_std[group]
        return matrix

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (for np.savez)."""
        out = {"intercept": self.intercept, "alphas": np.asarray(self.alphas)}
        for group in self.groups:
            out[f"weights/{group}"] = self.weights[group]
            if group in self.dense_mean:
                out[f"mean/{group}"], out[f"std/{group}"] = self.dense_mean[group], self.dense_std[group]
        return out

    @classmethod
    def from_arrays(cls, arrays, groups: list[str], group_weights: dict) -> RidgeHead:
        return cls(
            groups=groups,
            weights={g: arrays[f"weights/{g}"] for g in groups},
            intercept=arrays["intercept"],
            dense_mean={g: arrays[f"mean/{g}"] for g in groups if f"mean/{g}" in arrays},
            dense_std={g: arrays[f"std/{g}"] for g in groups if f"std/{g}" in arrays},
            alphas=arrays["alphas"].tolist(),
            group_weights=group_weights,
        )


def _centred_kernel(matrix) -> tuple[np.ndarray, float]:
    kernel = matrix @ matrix.T
    kernel = kernel.toarray() if hasattr(kernel, "toarray") else np.asarray(kernel)
    row_mean = kernel.mean(axis=0)
    kernel = kernel - row_mean[None, :] - row_mean[:, None] + row_mean.mean()
    scale = max(float(np.trace(kernel)) / len(kernel), 1e-12)
    return kernel / scale, scale


def loo_errors(kernel: np.ndarray, targets: np.ndarray, alphas) -> np.ndarray:
    """(alphas, tasks) leave-one-out mean squared errors of kernel ridge (closed form)."""
    eigenvalues, vectors = np.linalg.eigh(kernel)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = vectors.T @ targets
    errors = []
    for alpha in alphas:
        inverse = 1.0 / (eigenvalues + alpha)
        dual = vectors @ (projected * inverse[:, None])
        diagonal = (vectors**2) @ inverse
        errors.append(((dual / diagonal[:, None]) ** 2).mean(axis=0))
    return np.array(errors)


def fit_ridge(features: dict, targets: np.ndarray, alphas) -> RidgeHead:
    """Kernel ridge over the feature groups in `features` ({name: matrix}, rows = blocks) on
    z-scored `targets` (blocks, tasks); group weights and per-task strength by leave-one-out."""
    groups = list(features)
    dense_mean, dense_std, prepared = {}, {}, {}
    for group, matrix in features.items():
        if hasattr(matrix, "toarray"):  # sparse n-grams: already normalised per row
            prepared[group] = matrix
            continue
        matrix = np.asarray(matrix, dtype=np.float64)
        dense_mean[group], dense_std[group] = matrix.mean(axis=0), matrix.std(axis=0)
        dense_std[group][dense_std[group] == 0] = 1.0
        prepared[group] = (matrix - dense_mean[group]) / dense_std[group]
    kernels = {g: _centred_kernel(prepared[g]) for g in groups}
    centred = targets - targets.mean(axis=0)
    best = None
    for relative in itertools.product(RELATIVE_WEIGHTS, repeat=len(groups) - 1):
        weights = dict(zip(groups, (1.0, *relative), strict=True))
        kernel = sum(w * kernels[g][0] for g, w in weights.items() if w)
        errors = loo_errors(kernel, centred, alphas)  # (alphas, tasks)
        score = float(errors.min(axis=0).mean())
        if best is None or score < best[0]:
            best = (score, weights, [alphas[i] for i in errors.argmin(axis=0)])
    loo_mse, weights, chosen = best
    kernel = sum(w * kernels[g][0] for g, w in weights.items() if w)
    dual = np.stack(
        [np.linalg.solve(kernel + a * np.eye(len(kernel)), centred[:, t]) for t, a in enumerate(chosen)],
        axis=1,
    )
    primal, intercept = {}, targets.mean(axis=0).copy()
    for group in groups:
        matrix, scale = prepared[group], kernels[group][1]
        column_mean = np.asarray(matrix.mean(axis=0)).ravel()
        # the kernel was built from centred rows: w = (X - mean)^T dual, folded into w and the intercept
        w = np.asarray(matrix.T @ dual) - np.outer(column_mean, dual.sum(axis=0))
        w *= weights[group] / scale
        primal[group] = w
        intercept -= column_mean @ w
    return RidgeHead(groups, primal, intercept, dense_mean, dense_std, chosen, weights, loo_mse)
