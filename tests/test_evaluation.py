"""Stage 06 evaluation: completion losses equal a direct computation; generation; the whole report."""

import json

import pytest
import torch
import torch.nn.functional as F
from datasets import load_from_disk
from helpers import MICRO, train

from codesift.configs import EvaluationArguments
from codesift.evaluation import EvaluationError, completion_losses, program_tests, run_evaluation_stage
from codesift.generation import generate_completions, truncate_at_stop
from codesift.prepare.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def micro_model(micro_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_run") / "run"
    train(micro_corpus, out, "--max_steps", 3, "--save_steps", 100)
    return out


def direct_loss(model, rows) -> float:
    """Token-weighted mean NLL over completion tokens, one problem at a time, from the logits."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor(row["labels"][1:])
            logits = model(input_ids=ids).logits[0, :-1]
            scored = labels != -100
            total += F.cross_entropy(logits[scored], labels[scored], reduction="sum").item()
            count += int(scored.sum())
    return total / count


def test_report_loss_equals_a_direct_computation(micro_corpus, micro_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(micro_model)).eval()
    sets = load_from_disk(str(micro_corpus / "validation_tokenized"))
    losses = completion_losses(model, sets, ["humaneval"], ["report", "select", None], batch_size=7)
    assert set(losses) == {"humaneval/report", "humaneval/select", "humaneval/all"}
    assert losses["humaneval/report"] == pytest.approx(direct_loss(model, sets["humaneval_report"]), rel=1e-5)
    assert losses["humaneval/select"] == pytest.approx(direct_loss(model, sets["humaneval_select"]), rel=1e-5)
    assert losses["humaneval/report"] != pytest.approx(losses["humaneval/select"], rel=1e-6)


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(micro_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(micro_model)).eval()
    tokenizer = load_tokenizer(str(micro_model))
    prompts = ["def add(a, b):\n", "import os\n\n\nclass Reader:\n    def read(self", "x = 1\n"]
    batched = generate_completions(model, tokenizer, prompts, max_new_tokens=12, batch_size=3)
    alone = [generate_completions(model, tokenizer, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts]
    assert batched == alone
    sampled = generate_completions(
        model, tokenizer, prompts[:1], max_new_tokens=12, num_samples=4, temperature=1.0
    )
    assert len(sampled) == 1 and len(sampled[0]) == 4
    with pytest.raises(ValueError, match="leaves no room"):
        generate_completions(model, tokenizer, prompts, max_new_tokens=MICRO["max_position_embeddings"])


def test_stop_sequences_and_test_programs():
    assert truncate_at_stop("    return a + b\n\ndef other():\n    pass") == "    return a + b\n"
    assert truncate_at_stop("    return 1\n# comment") == "    return 1"
    assert truncate_at_stop("no stop") == "no stop"
    humaneval = {"test": "def check(candidate):\n    assert candidate(1) == 2\n", "entry_point": "inc"}
    assert program_tests(humaneval).rstrip().endswith("check(inc)")
    mbpp = {"test": "assert inc(1) == 2\n", "entry_point": "inc"}
    assert program_tests(mbpp) == mbpp["test"]


def test_evaluation_stage_reports_losses_and_pass_at_k(micro_corpus, micro_model, tmp_path):
    args = EvaluationArguments(
        model_name_or_path=str(micro_model),
        validation_sets=str(micro_corpus.parent / "validation_sets"),
        tokenized_validation_sets=str(micro_corpus / "validation_tokenized"),
        execution_tasks=["humaneval"],
        num_samples=2,
        k=[1, 2],
        temperature=1.0,
        max_new_tokens=16,
        output_dir=str(tmp_path / "eval"),
    )
    results = run_evaluation_stage(args)
    for key in ("loss/humaneval/report", "loss/humaneval/select", "pass@1/humaneval/report",
                "pass@1/humaneval/report/t1.0", "pass@2/humaneval/report/t1.0"):  # fmt: skip
        assert key in results, key
    assert 0.0 <= results["pass@1/humaneval/report"] <= 1.0
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["loss/humaneval/report"] == results["loss/humaneval/report"]
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").open()]
    report = load_from_disk(str(micro_corpus.parent / "validation_sets"))["humaneval_report"]
    assert len(samples) == len(report) * 3  # one greedy and two sampled programs per problem
    assert {s["mode"] for s in samples} == {"greedy", "sampled"}


def test_evaluation_refuses_unknown_tasks_and_non_python(micro_corpus, micro_model, tmp_path):
    from codesift.evaluation import execution_rows

    args = EvaluationArguments(
        model_name_or_path=str(micro_model),
        tokenized_validation_sets=str(micro_corpus / "validation_tokenized"),
        loss_tasks=["apps"],
        output_dir=str(tmp_path / "eval"),
    )
    with pytest.raises(EvaluationError, match=r"loss_tasks \['apps'\]"):
        run_evaluation_stage(args)
    assert not (tmp_path / "eval").exists()
    java = [
        {"task_id": "x", "prompt": "", "completion": "", "test": "t", "entry_point": "", "language": "java"}
    ]
    with pytest.raises(EvaluationError, match="not Python"):
        execution_rows({"j": java}, "j", None)
