"""Stage 01: the validation sets (coding tasks as prompt and completion) and the code corpus (a
datatrove pipeline of readers and filters, the tokenizer, the blocks every later stage reads)."""

from .corpus import run_corpus_stage
from .tasks import run_validation_sets_stage

__all__ = ["run_corpus_stage", "run_validation_sets_stage"]
