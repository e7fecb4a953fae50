"""Stage 03: data-influence scores, exact (one real optimizer step per candidate) and fast."""

from .exact import ExactScorer, TrainingStateSnapshot
from .fast import FAST_METHODS, FirstOrderScorer
from .scoring import (
    METHODS,
    SCORERS,
    load_checkpoint_for_scoring,
    make_scorer,
    run_influence_stage,
    score_rows,
)
from .validation import InfluenceError, Scorer, ValidationBatches

__all__ = [
    "ExactScorer",
    "FAST_METHODS",
    "FirstOrderScorer",
    "InfluenceError",
    "METHODS",
    "SCORERS",
    "Scorer",
    "TrainingStateSnapshot",
    "ValidationBatches",
    "load_checkpoint_for_scoring",
    "make_scorer",
    "run_influence_stage",
    "score_rows",
]
