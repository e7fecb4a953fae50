"""The LLM / classifier rater baselines, end to end on tiny models made here (no Hub)."""

import numpy as np
import pytest
import torch
from datasets import load_from_disk

from codesift.configs import SelectionArguments
from codesift.raters import DEFAULT_PROMPT, RaterError, answer_token_ids, rate_blocks
from codesift.selection import SelectionError, select


def tiny_llama(tokenizer, head: str):
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    return (LlamaForCausalLM if head == "lm" else LlamaForSequenceClassification)(config).eval()


@pytest.fixture(scope="module")
def raters(tmp_path_factory, small_tokenizer):
    root = tmp_path_factory.mktemp("raters")
    for head in ("lm", "classifier"):
        tiny_llama(small_tokenizer, head).save_pretrained(str(root / head))
        small_tokenizer.save_pretrained(str(root / head))
    return root


@pytest.fixture(scope="module")
def blocks(micro_corpus):
    return load_from_disk(str(micro_corpus / "blocks"))["candidates"].select(range(6))


def test_lm_rating_is_log_p_yes_minus_log_p_no_after_the_prompt(
    raters, blocks, micro_corpus, small_tokenizer
):
    from codesift.prepare.tokenizer import load_tokenizer

    block_tokenizer = load_tokenizer(str(micro_corpus / "tokenizer"))
    values = rate_blocks(blocks["input_ids"], block_tokenizer, str(raters / "lm"), kind="lm", batch_size=4)
    assert values.shape == (6,) and np.isfinite(values).all() and len(set(values.round(6))) > 1
    # by hand, one block alone (no padding): the model's next-token log-probabilities
    model = tiny_llama(small_tokenizer, "lm")
    text = block_tokenizer.decode(blocks[2]["input_ids"], skip_special_tokens=True)
    ids = small_tokenizer(DEFAULT_PROMPT.format(text=text), return_tensors="pt")["input_ids"][:, -512:]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), -1)
    yes, no = answer_token_ids(small_tokenizer)
    assert values[2] == pytest.approx(float(logprobs[yes] - logprobs[no]), abs=1e-4)


def test_classifier_rating_is_its_output(raters, blocks, micro_corpus, small_tokenizer):
    from codesift.prepare.tokenizer import load_tokenizer

    block_tokenizer = load_tokenizer(str(micro_corpus / "tokenizer"))
    values = rate_blocks(blocks["input_ids"], block_tokenizer, str(raters / "classifier"), batch_size=6)
    model = tiny_llama(small_tokenizer, "classifier")
    text = block_tokenizer.decode(blocks[0]["input_ids"], skip_special_tokens=True)
    with torch.no_grad():
        alone = model(**small_tokenizer(text, return_tensors="pt", truncation=True, max_length=512)).logits
    assert values[0] == pytest.approx(float(alone[0, 0]), abs=1e-4)
    with pytest.raises(RaterError, match="rater kind"):
        rate_blocks(blocks["input_ids"], block_tokenizer, str(raters / "lm"), kind="judge")


def test_rater_strategy_keeps_the_best_rated_blocks(raters, micro_corpus, tmp_path):
    from codesift.prepare.tokenizer import load_tokenizer

    args = SelectionArguments(
        strategy="rater",
        scores=None,
        candidates=str(micro_corpus / "blocks"),
        documents=None,
        rater_model=str(raters / "classifier"),
        rater_tokenizer=str(micro_corpus / "tokenizer"),
        fraction=0.25,
        output_dir=str(tmp_path / "sel"),
    )
    chosen = select(args)
    pool = load_from_disk(str(micro_corpus / "blocks"))["candidates"]
    values = rate_blocks(pool["input_ids"], load_tokenizer(args.rater_tokenizer), args.rater_model)
    best = {int(pool[int(i)]["block_id"]) for i in np.argsort(-values, kind="stable")[:10]}
    assert set(chosen.blocks["block_id"]) == best and chosen.metadata["rater_model"] == args.rater_model
    with pytest.raises(SelectionError, match="needs `rater_model`"):
        select(SelectionArguments(strategy="rater", scores=None, candidates=args.candidates))
