"""The cost model: parameter counts against the real model, FLOPs and memory by hand, the bill."""

import pytest

from codesift.costs import ModelShape, memory_plan, scoring_flops_per_block, selection_bill
from codesift.modeling import VocabSpec, build_model_config, count_parameters


@pytest.mark.parametrize("preset,vocab", [("tiny", 8192), ("codellm-1b", 49152)])
def test_shape_counts_the_parameters_the_model_has(preset, vocab):
    config = build_model_config(preset, VocabSpec(vocab))
    assert ModelShape.from_config(config).params == count_parameters(config)


def test_flops_by_hand():
    # 1 layer, hidden 4, 2 heads of 2, 1 KV head, FFN 8, vocabulary 10, context 6
    shape = ModelShape(layers=1, hidden=4, heads=2, kv_heads=1, ffn=8, vocab=10, context=6)
    layer = 4 * 4 * 2 + 4 * 2 * 2 + 3 * 4 * 8 + 2 * 4  # q,o; k,v; MLP; norms = 152
    assert shape.layer_params == layer
    assert shape.params == 10 * 4 + layer + 4 + 10 * 4
    forward = 2 * (layer + 40) + 2 * 1 * 6 * 4
    assert shape.forward_flops_per_token() == forward
    assert shape.training_flops_per_token() == 3 * forward
    # exact: a training step on the block and a forward over the validation tokens
    assert scoring_flops_per_block(shape, "exact", 6, 100) == 3 * forward * 6 + forward * 100
    assert scoring_flops_per_block(shape, "adam_update", 6, 100) == 3 * forward * 6
    # forward-only: two forwards per task, cheaper than a backward only for one task
    assert scoring_flops_per_block(shape, "adam_precond_forward", 6, 100, tasks=2) == 4 * forward * 6
    assert scoring_flops_per_block(shape, "adam_precond_forward", 6, 100, tasks=1) < 3 * forward * 6
    # a partial backward through the one and only layer is the full backward
    assert scoring_flops_per_block(shape, "adam_update", 6, 100, top_layers=1) == 3 * forward * 6


def test_partial_backward_is_cheaper_with_fewer_layers():
    shape = ModelShape.from_config(build_model_config("codellm-1b", VocabSpec(49152)))
    costs = [scoring_flops_per_block(shape, "grad_dot", 2048, 10_000, top_layers=k) for k in (1, 4, 22)]
    assert costs[0] < costs[1] < costs[2] == scoring_flops_per_block(shape, "grad_dot", 2048, 10_000)
    assert costs[0] > shape.forward_flops_per_token(2048) * 2048  # never below one forward


def test_memory_plan_shards_states_and_counts_tokens():
    shape = ModelShape.from_config(build_model_config("codellm-1b", VocabSpec(49152)))
    one = memory_plan(shape, 1, 16, 2048, 4, sharded=False)
    eight = memory_plan(shape, 8, 16, 2048, 4, sharded=True)
    assert one["adamw_moments"] == pytest.approx(8 * shape.params / 1024**3)
    assert eight["adamw_moments"] == pytest.approx(one["adamw_moments"] / 8)
    assert eight["activations"] == one["activations"]  # per GPU, set by the micro batch
    assert eight["tokens_per_step"] == 8 * 16 * 2048 * 4 == 1_048_576  # the recipe's ~1M tokens
    assert memory_plan(shape, 1, 16, 2048, optimizer="adamw_8bit", sharded=False)[
        "adamw_moments"
    ] == pytest.approx(one["adamw_moments"] / 4)
    checkpointed = memory_plan(shape, 1, 16, 2048, activation_checkpointing=True, sharded=False)
    assert checkpointed["activations"] == pytest.approx(one["activations"] * 2 / 34)


def test_selection_bill_prices_labels_and_predictions():
    shape = ModelShape.from_config(build_model_config("codellm-1b", VocabSpec(49152)))
    bill = selection_bill(shape, 100e9, 100e9, 2048, 20_000, label_fraction=0.01)
    assert bill["score_pool_exact"] > bill["score_pool_adam_update"] > bill["label_adam_update_and_predict"]
    assert bill["label_exact_and_predict"] == pytest.approx(bill["score_pool_exact"] * 0.01)
    # fast scoring of a pool costs the FLOPs of training on it (one forward and backward per block),
    # at float32's peak instead of bf16's
    from codesift.costs import H100_BF16_PEAK_FLOPS, H100_FP32_PEAK_FLOPS

    ratio = H100_BF16_PEAK_FLOPS / H100_FP32_PEAK_FLOPS
    assert bill["score_pool_adam_update"] == pytest.approx(bill["pretrain"] * ratio)
    same = selection_bill(shape, 100e9, 100e9, 2048, 20_000, 0.01, scoring_gpus_flops=H100_BF16_PEAK_FLOPS)
    assert same["score_pool_adam_update"] == pytest.approx(bill["pretrain"])
    predicted = selection_bill(shape, 100e9, 100e9, 2048, 20_000, 0.01, predictor_flops_per_token=1e9)
    assert predicted["label_exact_and_predict"] > bill["label_exact_and_predict"]


def test_the_docs_carry_the_bill_the_model_computes():
    from pathlib import Path

    from codesift.costs import bill_markdown, paper_scale_bill

    page = (Path(__file__).resolve().parents[1] / "docs" / "costs.md").read_text()
    assert bill_markdown(paper_scale_bill()) in page


def test_the_recipe_bill_reads_the_1b_recipe_and_prices_each_part_in_its_precision(tmp_path):
    """The 1B recipe's own job, from its YAMLs: changing a recipe's numbers changes the bill, and
    stage 03 is priced at float32's peak, training at bf16's."""
    import shutil
    from pathlib import Path

    import yaml

    from codesift.costs import recipe_bill, recipe_bill_markdown

    recipes = Path(__file__).resolve().parents[1] / "recipes" / "codellm-1b"
    rows = {r["work"].split(":")[0]: r for r in recipe_bill(recipes)}
    assert (
        rows["stage 03"]["precision"] == "fp32"
        and rows["pretrain the warm-up to the scored checkpoint"]["precision"] == "bf16"
    )
    page = (recipes.parents[1] / "docs" / "costs.md").read_text()
    assert recipe_bill_markdown(recipe_bill(recipes)) in page
    copy = tmp_path / "codellm-1b"
    shutil.copytree(recipes, copy)
    influence = yaml.safe_load((copy / "influence.yaml").read_text())
    influence["max_candidates"] *= 2
    (copy / "influence.yaml").write_text(yaml.safe_dump(influence))
    doubled = {r["work"].split(":")[0]: r for r in recipe_bill(copy)}
    assert doubled["stage 03"]["hours"] == pytest.approx(2 * rows["stage 03"]["hours"])
