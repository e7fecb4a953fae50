"""Stage 05: prediction-based influence scores (MATES's data influence model, at any scale).

Label a seeded part of the pool with stage 03's oracle, fit a cheap predictor on it (hashed n-gram
ridge, a frozen encoder's embeddings + ridge, or a Trainer-fine-tuned regression head), judge it on
held-out labels, and predict the whole pool with `datasets.map`, as stage 04 and 06 select from.
"""

from .labels import Labels, PredictorError, Standardiser, load_labels, split_labels
from .models import (
    FEATURE_GROUPS,
    PREDICTORS,
    RidgePredictor,
    load_predictor,
    load_saved_predictor,
    make_predictor,
)
from .stage import agreement, predict_dataset, run_predictor_stage, top_precision

__all__ = [
    "FEATURE_GROUPS",
    "PREDICTORS",
    "Labels",
    "PredictorError",
    "RidgePredictor",
    "Standardiser",
    "agreement",
    "load_labels",
    "load_predictor",
    "load_saved_predictor",
    "make_predictor",
    "predict_dataset",
    "run_predictor_stage",
    "split_labels",
    "top_precision",
]
