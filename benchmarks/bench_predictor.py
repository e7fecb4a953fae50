"""Stage 05's predictors on the tiny recipe: how well each predicts the oracle, and what it costs
per block next to the oracle, measured side by side in one run.

    .venv/bin/python benchmarks/bench_predictor.py                    # after `make demo`
    .venv/bin/python benchmarks/bench_predictor.py --no-finetuned     # ridge predictors only

On the stage-03 scores of the whole 2,000-block pool (step 300, adam_update): a seeded 20% is held
out, never trained on; each predictor trains on the rest and is judged on it (Pearson, Spearman,
top-20% precision per task); the combined ridge's learning curve over the number of labels; the
fast and exact oracle's seconds per block on a few candidates from the same checkpoint, and each
predictor's seconds per block on the whole pool. With exact scores present (`make exact`), the
combined ridge is also judged on exact labels by 5-fold cross-validation.

Goals (issue 12): best held-out Spearman >= 0.85 on both tasks and top-20% precision >= 0.7; the
cheapest useful predictor >= 100x cheaper per block than the fast oracle.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from codesift.configs import load_stage_config
from codesift.predictor import agreement
from codesift.predictor.features import clear_caches
from codesift.predictor.labels import Labels
from codesift.predictor.stage import Context, fit_and_judge

VARIANTS = {
    "ngram ridge": {"predictor": "ridge", "features": ["ngrams"]},
    "hand features + block loss ridge": {"predictor": "ridge", "features": ["hand"]},
    "LM embeddings ridge": {"predictor": "ridge", "features": ["embeddings"]},
    "combined ridge (n-grams + hand + embeddings)": {
        "predictor": "ridge",
        "features": ["ngrams", "hand", "embeddings"],
    },
    "LM checkpoint fine-tuned (Trainer)": {"predictor": "finetuned"},
    "small encoder from scratch (Trainer)": {
        "predictor": "finetuned",
        "model_name_or_path": "scratch",
        "learning_rate": 5e-4,
        "num_train_epochs": 10,
    },
}
CURVE = [100, 250, 500, 1000, 1600]


def oracle_seconds_per_block(checkpoint: str, n_fast: int, n_exact: int) -> dict:
    """The fast (adam_update) and exact oracle's seconds per block on the first candidates."""
    from codesift.data import load_candidates, load_eval_datasets
    from codesift.influence import ValidationBatches, load_checkpoint_for_scoring, make_scorer, score_rows

    args = load_stage_config("influence")
    candidates = load_candidates(args.candidates, args.candidates_split, n_fast)
    task_sets = load_eval_datasets(args.validation_sets, args.tasks, args.part)
    out = {}
    for method, n in (("adam_update", n_fast), ("exact", n_exact)):
        model, optimizer, train_args, step = load_checkpoint_for_scoring(checkpoint)
        validation = ValidationBatches(task_sets, args.eval_batch_size, model.config.pad_token_id or 0)
        start = time.perf_counter()
        scorer = make_scorer(method, model, optimizer, validation, train_args.max_grad_norm)
        out[f"{method}_setup_seconds"] = time.perf_counter() - start  # once per checkpoint, not per block
        start = time.perf_counter()
        score_rows(scorer, list(task_sets), candidates.select(range(n)), step, method, desc=method)
        out[method] = (time.perf_counter() - start) / n
    return out


def predict_seconds_per_block(predictor, standardiser, context: Context) -> float:
    ids = [list(x) for x in context.candidates["input_ids"]]
    start = time.perf_counter()
    for i in range(0, len(ids), context.args.batch_size):
        standardiser.inverse(predictor.predict(ids[i : i + context.args.batch_size]))
    return (time.perf_counter() - start) / len(ids)


def exact_label_check(base, exact_dir: Path, folds: int = 5) -> dict | None:
    """The combined ridge by k-fold cross-validation on exact labels, and on the same blocks' fast
    labels for comparison (exact labels may be noisier than first-order ones)."""
    if not (exact_dir / "dataset_info.json").is_file():
        return None
    from datasets import load_from_disk

    count = len(load_from_disk(str(exact_dir)))
    out = {}
    for name, scores in (("exact", str(exact_dir)), ("adam_update", base.scores)):
        args = dataclasses.replace(base, scores=scores, num_labels=count)
        context = Context(dataclasses.replace(args, scores=str(exact_dir)))
        blocks = context.labels.block_ids
        if name != "exact":  # the fast labels of the very blocks exact scored
            fast = Context(dataclasses.replace(args, num_labels=None)).labels
            keep = np.isin(fast.block_ids, blocks)
            context.labels = Labels(fast.block_ids[keep], fast.values[keep], fast.tasks)
        predicted = np.zeros_like(context.labels.values)
        order = np.random.default_rng(0).permutation(len(blocks))
        for fold in range(folds):
            test = np.sort(order[fold::folds])
            train = np.setdiff1d(np.arange(len(blocks)), test)
            context.heldout = context.labels.subset(test)
            predicted[test] = fit_and_judge(context, context.labels.subset(train), args).predicted
        out[name] = {"blocks": len(blocks), **agreement(context.labels.values, predicted, context.tasks)}
    # trained on the fast labels of every other block, judged on the exactly scored ones
    exact = Context(dataclasses.replace(base, scores=str(exact_dir), num_labels=count)).labels
    context = Context(dataclasses.replace(base, num_labels=None))
    others = ~np.isin(context.labels.block_ids, exact.block_ids)
    context.heldout = exact
    fit = fit_and_judge(context, context.labels.subset(np.flatnonzero(others)))
    fast_same = context.labels.subset(np.flatnonzero(~others))
    out["trained_on_fast_judged_on_exact"] = {"blocks": count, **fit.heldout}
    out["trained_on_fast_judged_on_fast"] = {
        "blocks": count,
        **agreement(fast_same.values, fit.predicted, exact.tasks),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-finetuned", action="store_true", help="Skip the Trainer-fine-tuned heads.")
    parser.add_argument("--fast-candidates", type=int, default=100)
    parser.add_argument("--exact-candidates", type=int, default=10)
    parser.add_argument("--output", default="outputs/tiny/benchmarks/predictor.json")
    options = parser.parse_args()

    base = dataclasses.replace(
        load_stage_config("predictor"), label_fraction=1.0, heldout_fraction=0.2, learning_curve=[]
    )
    context = Context(base)
    print(
        f"labels: {base.scores}, {len(context.train.block_ids)} train / {len(context.heldout.block_ids)} held out, tasks {context.tasks}"
    )
    oracle = oracle_seconds_per_block(base.encoder, options.fast_candidates, options.exact_candidates)
    print(f"oracle seconds per block: adam_update {oracle['adam_update']:.4f}, exact {oracle['exact']:.4f} "
          f"(setup once per checkpoint: {oracle['adam_update_setup_seconds']:.1f} s and {oracle['exact_setup_seconds']:.1f} s)")  # fmt: skip

    from datetime import date

    from codesift.experiment import machine_description

    labels = (
        f"`{base.scores}`, {len(context.train.block_ids)} train / {len(context.heldout.block_ids)} held out"
    )
    results = {"date": date.today().isoformat(), "machine": machine_description(), "labels": labels,
               "oracle_seconds_per_block": oracle, "predictors": {}}  # fmt: skip
    for name, overrides in VARIANTS.items():
        if options.no_finetuned and overrides["predictor"] == "finetuned":
            continue
        args = dataclasses.replace(base, **overrides)
        fit = fit_and_judge(context, context.train, args)
        heldout, train_seconds = fit.heldout, fit.train_seconds
        clear_caches()  # timed cold: every block's forward pass counts
        per_block = predict_seconds_per_block(fit.predictor, fit.standardiser, context)
        results["predictors"][name] = {
            "heldout": heldout,
            "train_seconds": train_seconds,
            "predict_seconds_per_block": per_block,
        }
        cells = "  ".join(
            f"{t}: rho {s['spearman']:.3f} r {s['pearson']:.3f} top20 {s['top20_precision']:.2f}"
            for t, s in heldout.items()
        )
        print(f"{name:48s} {cells}  train {train_seconds:6.1f} s  predict {per_block * 1e3:7.3f} ms/block "
              f"({oracle['adam_update'] / per_block:7.1f}x cheaper than adam_update, {oracle['exact'] / per_block:7.1f}x than exact)")  # fmt: skip

    combined = dataclasses.replace(base, features=["ngrams", "hand", "embeddings"])
    curve = []
    order = np.random.default_rng(1).permutation(len(context.train.block_ids))
    for n in CURVE:
        subset = context.train.subset(np.sort(order[: min(n, len(order))]))
        heldout = fit_and_judge(context, subset, combined).heldout
        curve.append({"labels": len(subset.block_ids), **heldout})
        print(f"learning curve, combined ridge, {len(subset.block_ids):5d} labels: "
              + "  ".join(f"{t} rho {s['spearman']:.3f} top20 {s['top20_precision']:.2f}" for t, s in heldout.items()))  # fmt: skip
    results["learning_curve"] = curve

    exact = exact_label_check(combined, Path(base.scores).parent / "exact")
    results["exact_labels"] = exact
    if exact is None:
        print("exact labels: none (run `make exact` first)")
    else:
        for name, stats in exact.items():
            print(f"{name} ({stats['blocks']} blocks; 5-fold CV unless named): "
                  + "  ".join(f"{t} rho {stats[t]['spearman']:.3f}" for t in context.tasks))  # fmt: skip

    best = max(
        results["predictors"].items(), key=lambda kv: min(s["spearman"] for s in kv[1]["heldout"].values())
    )
    name, stats = best
    print(f"\nbest: {name}: min Spearman {min(s['spearman'] for s in stats['heldout'].values()):.3f} (goal >= 0.85), "
          f"min top-20% precision {min(s['top20_precision'] for s in stats['heldout'].values()):.2f} (goal >= 0.7)")  # fmt: skip
    ngram = results["predictors"]["ngram ridge"]
    print(f"n-gram ridge: {oracle['adam_update'] / ngram['predict_seconds_per_block']:.0f}x cheaper per block than "
          "the fast oracle (goal >= 100x)")  # fmt: skip
    Path(options.output).parent.mkdir(parents=True, exist_ok=True)
    Path(options.output).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {options.output}")


if __name__ == "__main__":
    main()
