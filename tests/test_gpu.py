"""What only a GPU can check (marked `gpu`: skipped where there is no CUDA device)."""

import pytest
import torch
from datasets import load_from_disk
from helpers import train

from codesift.influence import ValidationBatches, load_checkpoint_for_scoring, make_scorer, score_rows

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def checkpoint(micro_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_run") / "run"
    train(micro_corpus, out, "--max_steps", 4, "--save_steps", 4, "--schedule_total_steps", 10)
    return out / "checkpoint-4"


def test_batched_scores_on_the_gpu_equal_batch_one_on_the_cpu(micro_corpus, checkpoint):
    sets = load_from_disk(str(micro_corpus / "validation_tokenized"))
    tasks = {"he": sets["humaneval_select"]}
    pool = load_from_disk(str(micro_corpus / "blocks"))["candidates"].select(range(8))
    found = {}
    for device, batch in (("cpu", 1), ("cuda", 4)):
        model, optimizer, args, step = load_checkpoint_for_scoring(checkpoint, device)
        validation = ValidationBatches(tasks, 8, 0, device)
        scorer = make_scorer("adam_precond_clipped", model, optimizer, validation, args.max_grad_norm, batch)
        found[device] = torch.tensor([r["influence_he"] for r in score_rows(scorer, ["he"], pool, step, "m")])
    scale = found["cpu"].abs().max()
    torch.testing.assert_close(found["cuda"] / scale, found["cpu"] / scale, rtol=0, atol=1e-3)


def test_a_bf16_step_with_8bit_adamw_runs_on_the_gpu():
    import bitsandbytes as bnb

    from codesift.modeling import VocabSpec, build_model, build_model_config

    config = build_model_config(
        "codellm-1b", VocabSpec(1024), {"num_hidden_layers": 2, "max_position_embeddings": 512}
    )
    model = build_model(config, seed=0).to("cuda", torch.bfloat16)
    optimizer = bnb.optim.AdamW8bit(model.parameters(), lr=1e-3)
    ids = torch.randint(3, 1024, (2, 512), device="cuda")
    losses = []
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses  # the same batch three times: the loss falls
