import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TASK_DATA = PROJECT_ROOT / "data"

# The suite never reaches the Hub, whatever the caller's environment says.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def task_data() -> Path:
    """The MBPP and HumanEval-X files the kit ships under data/ (with their licenses)."""
    return TASK_DATA


@pytest.fixture(scope="session")
def small_tokenizer():
    """A byte-level BPE trained in a second on a few stdlib modules."""
    import inspect
    import json
    import textwrap

    from codesift.prepare.tokenizer import train_bpe_tokenizer

    texts = [inspect.getsource(module) for module in (json, textwrap, inspect)]
    return train_bpe_tokenizer(texts, vocab_size=600, model_max_length=128)


@pytest.fixture(scope="session")
def micro_corpus(tmp_path_factory):
    """Stage 01 at toy size: HumanEval sets, six stdlib modules, 64-token blocks, a 400-token BPE."""
    import shutil
    import sysconfig

    from codesift.configs import CorpusArguments
    from codesift.prepare.corpus import build_corpus
    from codesift.prepare.tasks import build_validation_sets
    from codesift.utils import save_to_disk, write_json

    root = tmp_path_factory.mktemp("micro")
    code = root / "code"
    code.mkdir()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in ("textwrap.py", "shlex.py", "csv.py", "fractions.py", "glob.py", "fnmatch.py"):
        shutil.copy(stdlib / name, code / name)
    built = build_validation_sets(["humaneval"], select_fraction=0.5)
    sets = built.to_dataset_dict()
    save_to_disk(sets, root / "validation_sets")
    write_json(root / "validation_sets" / "metadata.json", built.metadata)
    args = CorpusArguments(
        sources=[f"dir:{code}"],
        validation_sets=None,
        vocab_size=400,
        seq_len=64,
        num_candidates=40,
    )
    build_corpus(args, root / "corpus", sets)
    return root / "corpus"


@pytest.fixture(scope="session")
def scored_micro_run(micro_corpus, tmp_path_factory):
    """A 4-step micro warm-up of a 10-step schedule and its whole 40-block pool scored at the end
    (adam_update, HumanEval select half): (run folder, checkpoint, scores folder)."""
    from helpers import train

    from codesift.configs import InfluenceArguments
    from codesift.influence import run_influence_stage

    root = tmp_path_factory.mktemp("scored_run")
    train(micro_corpus, root / "pretrain", "--max_steps", 4, "--schedule_total_steps", 10, "--save_steps", 4)
    run_influence_stage(
        InfluenceArguments(
            checkpoint=[str(root / "pretrain" / "checkpoint-4")],
            candidates=str(micro_corpus / "blocks"),
            validation_sets=str(micro_corpus / "validation_tokenized"),
            tasks=["humaneval"],
            methods=["adam_update"],
            eval_batch_size=16,
            shard_size=20,
            output_dir=str(root / "influence"),
        )
    )
    return (
        root / "pretrain",
        root / "pretrain" / "checkpoint-4",
        root / "influence" / "step-4" / "adam_update",
    )
