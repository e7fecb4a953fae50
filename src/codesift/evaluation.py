"""Stage 06: judge a model on the downstream tasks.

Two measures per task and part:
- the completion loss: the mean NLL over the reference completions' tokens (token-weighted, the
  quantity stage 03 scores against), on the `report` part (problems the selection never saw) and,
  labelled as such, on the `select` part;
- pass@k by execution: greedy pass@1 and, with `num_samples`, sampled pass@k, on the tasks with
  tests (HumanEval, MBPP), through the `evaluate` module `src/codesift/metrics/pass_at_k` and its sandbox.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .data import task_names, task_part
from .errors import CodesiftError
from .generation import generate_completions
from .influence.validation import ValidationBatches
from .prepare.tokenizer import load_tokenizer
from .utils import atomic_directory, set_seed, write_json, write_jsonl

# Imported inside the functions that use them (heavy or optional): datasets, evaluate, transformers.

logger = logging.getLogger(__name__)

METRIC_DIR = Path(__file__).parent / "metrics" / "pass_at_k"


class EvaluationError(CodesiftError):
    """An evaluation input that cannot work; raised before anything runs."""


# ----------------------------------------------------------------------------------------------
# Completion loss
# ----------------------------------------------------------------------------------------------


def completion_losses(
    model, tokenized_sets, tasks: list[str], parts: list[str | None], batch_size=32
) -> dict:
    """{"<task>/<part>": mean completion-token loss}; part None is the whole task ("<task>/all")."""
    device = next(model.parameters()).device
    losses = {}
    for part in parts:
        sets = {task: task_part(tokenized_sets, task, part) for task in tasks}
        batches = ValidationBatches(sets, batch_size, model.config.pad_token_id or 0, device)
        for task, loss in zip(batches.tasks, batches.losses(model).tolist(), strict=True):
            losses[f"{task}/{part or 'all'}"] = loss
    return losses


# ----------------------------------------------------------------------------------------------
# Execution: programs and references as the pass@k metric (and the Hub's code_eval) take them
# ----------------------------------------------------------------------------------------------


def program_tests(row: dict) -> str:
    """A problem's test code: HumanEval's `check` function is called on the entry point; MBPP's
    asserts run as they are."""
    test = row["test"]
    if "def check(" in test and row.get("entry_point"):
        test += f"\ncheck({row['entry_point']})\n"
    return test


def pass_at_k_metric():
    """The `evaluate` module that ships inside the package, `codesift/metrics/pass_at_k` (the Hub's
    code_eval interface); it loads by itself, so an installed kit needs no checkout."""
    import evaluate

    return evaluate.load(str(METRIC_DIR))


def execution_rows(validation_sets, task: str, part: str | None) -> list[dict]:

    rows = list(task_part(validation_sets, task, part))
    if not rows or not any(r["test"] for r in rows):
        raise EvaluationError(f"task {task!r} has no tests to execute")
    if any(r["language"] != "python" for r in rows):
        raise EvaluationError(f"task {task!r} is not Python; the sandbox runs Python only")
    return rows


def pass_at_k(
    completions: list[list[str]],
    rows: list[dict],
    ks,
    num_workers=2,
    timeout=3.0,
    metric=None,
    site_packages=True,
):
    """(pass@k dict, per-program results) of completions to `rows` (prompt + completion + tests)."""
    metric = metric or pass_at_k_metric()
    predictions = [[row["prompt"] + c for c in cands] for row, cands in zip(rows, completions, strict=True)]
    return metric.compute(
        predictions=predictions,
        references=[program_tests(r) for r in rows],
        k=list(ks),
        num_workers=num_workers,
        timeout=timeout,
        site_packages=site_packages,
    )


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


def load_model_for_evaluation(name_or_path: str):
    from transformers import AutoModelForCausalLM

    if not Path(name_or_path).exists() and name_or_path.startswith(("outputs/", ".", "/")):
        raise EvaluationError(f"no model at {name_or_path}")
    model = AutoModelForCausalLM.from_pretrained(name_or_path)  # in the dtype it was saved in
    logger.info(
        "evaluating %s: %s weights as saved, losses and generation in that dtype", name_or_path, model.dtype
    )
    tokenizer = load_tokenizer(name_or_path)
    return model.eval(), tokenizer


def load_sets(path: str, what: str):
    from datasets import load_from_disk

    if not (Path(path) / "dataset_dict.json").is_file():
        raise EvaluationError(f"{what} not found at {path}: run stage 01 (scripts/build_*.py) first")
    return load_from_disk(str(path))


def evaluate_model(args, model=None, tokenizer=None, metric=None) -> dict:
    """Every measure for one model, as a flat dict ("loss/<task>/<part>", "pass@1/<task>/<part>",
    ...) plus the generated programs' outcomes under "samples"."""
    set_seed(args.seed)
    start = time.perf_counter()
    if model is None:
        model, tokenizer = load_model_for_evaluation(args.model_name_or_path)
    tokenized = load_sets(args.tokenized_validation_sets, "tokenized validation sets")
    loss_tasks = args.loss_tasks or task_names(tokenized)
    unknown = [t for t in loss_tasks if t not in task_names(tokenized)]
    if unknown:
        raise EvaluationError(f"loss_tasks {unknown} not in {args.tokenized_validation_sets}")
    results = {"model": str(args.model_name_or_path)}
    if args.execution_tasks:  # which packages the programs could import decides some verdicts
        results["sandbox"] = "installed packages" if args.sandbox_site_packages else "standard library only"
    parts = [None if p in (None, "all") else p for p in args.loss_parts]
    for key, value in completion_losses(model, tokenized, loss_tasks, parts, args.eval_batch_size).items():
        results[f"loss/{key}"] = value
    samples = []
    if args.execution_tasks:
        raw = load_sets(args.validation_sets, "validation sets")
        metric = metric or pass_at_k_metric()
        for task in args.execution_tasks:
            rows = execution_rows(raw, task, args.execution_part)
            label = f"{task}/{args.execution_part or 'all'}"
            runs = []
            if args.greedy:
                runs.append(("greedy", 1, 0.0, [1]))
            if args.num_samples > 0:
                runs.append(("sampled", args.num_samples, args.temperature, args.k))
            for mode, n, temperature, ks in runs:
                completions = generate_completions(
                    model, tokenizer, [r["prompt"] for r in rows], args.max_new_tokens, n, temperature,
                    args.top_p, args.generation_batch_size, args.seed,
                )  # fmt: skip
                scores, outcomes = pass_at_k(
                    completions, rows, ks, args.num_workers, args.timeout, metric, args.sandbox_site_packages
                )
                for name, value in scores.items():
                    results[f"{name}/{label}" + ("" if mode == "greedy" else f"/t{temperature}")] = value
                samples += [
                    {
                        "task": task,
                        "task_id": rows[i]["task_id"],
                        "mode": mode,
                        "completion": completions[i][j],
                        "passed": outcome["passed"],
                        "result": outcome["result"],
                    }
                    for i, per_problem in outcomes.items()
                    for j, outcome in per_problem
                ]
    results["seconds"] = time.perf_counter() - start
    results["samples"] = samples
    return results


def reference_pass_at_1(validation_sets, task: str, part: str | None = None, metric=None, num_workers=2):
    """pass@1 of a task's own reference completions: the harness check (HumanEval's must be 1.0)."""
    rows = execution_rows(validation_sets, task, part)
    scores, outcomes = pass_at_k([[r["completion"]] for r in rows], rows, [1], num_workers, metric=metric)
    failed = [rows[i]["task_id"] for i, per in outcomes.items() if not per[0][1]["passed"]]
    return scores["pass@1"], failed


def run_evaluation_stage(args) -> dict:
    """Evaluate `args.model_name_or_path`; writes metrics.json and samples.jsonl to output_dir."""
    results = evaluate_model(args)
    samples = results.pop("samples")
    with atomic_directory(args.output_dir) as tmp:
        write_json(tmp / "metrics.json", results)
        write_jsonl(tmp / "samples.jsonl", samples)
    for key, value in results.items():
        if isinstance(value, float) and key != "seconds":
            logger.info("%-40s %.4f", key, value)
    return results
