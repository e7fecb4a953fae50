"""A regression head fine-tuned with the HF Trainer (MATES's data influence model).

`AutoModelForSequenceClassification` with one output per task (problem_type regression) from:
the LM checkpoint itself (model-aware, the blocks' own tokenizer), `scratch` (a small BERT encoder
on the blocks' tokenizer, trained from nothing), or any Hub id (bert-base-uncased as MATES,
BAAI/bge-base-en-v1.5 as Group-MATES): blocks read as text by its tokenizer, cut into chunks of its
context; a chunk is trained on its block's label and a block's prediction is its chunks' mean.
The epoch kept is the best by mean Spearman on a validation tenth of the training labels.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..stats import spearman
from .features import chunk_tokens, mean_by_owner, same_vocabulary
from .labels import PredictorError

# Imported inside the functions that use them (heavy or optional): datasets, torch, transformers.

SCRATCH = "scratch"


def load_regression_model(name_or_path: str, blocks_tokenizer, num_tasks: int, seq_len: int):
    """(model, tokenizer, whether the model reads the blocks' ids directly)."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
    )

    if name_or_path == SCRATCH:
        config = BertConfig(
            vocab_size=len(blocks_tokenizer),
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
            max_position_embeddings=seq_len + 2,
            pad_token_id=blocks_tokenizer.pad_token_id,
            num_labels=num_tasks,
            problem_type="regression",
        )
        return BertForSequenceClassification(config), blocks_tokenizer, True
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, num_labels=num_tasks, problem_type="regression"
    )
    shared = same_vocabulary(tokenizer, blocks_tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:  # a causal LM pools at the last non-pad token
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, shared


def chunk_rows(input_ids, tokenizer, blocks_tokenizer, shared: bool, max_length: int):
    """([token ids of each chunk], [the block each chunk came from])."""
    if shared:
        lists = [list(ids) for ids in input_ids]
    else:
        texts = blocks_tokenizer.batch_decode(input_ids)
        lists = [tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"] for t in texts]
    chunks, owner = chunk_tokens(lists, tokenizer, max_length, special=not shared)
    return chunks, np.asarray(owner)


class FinetunedRegressor:
    """fit(input_ids, z-scored targets) with the Trainer; predict(input_ids) -> (blocks, tasks)."""

    def __init__(self, args, blocks_tokenizer, tasks: list[str], seq_len: int):
        self.args, self.tasks, self.blocks_tokenizer = args, tasks, blocks_tokenizer
        self.model, self.tokenizer, self.shared = load_regression_model(
            args.model_name_or_path, blocks_tokenizer, len(tasks), seq_len
        )
        context = getattr(self.model.config, "max_position_embeddings", seq_len)
        self.max_length = min(seq_len if self.shared else args.max_length, context)
        if self.shared and self.model.config.vocab_size < len(blocks_tokenizer):
            raise PredictorError(
                f"{args.model_name_or_path}: its vocabulary is smaller than the blocks' tokenizer"
            )

    def _dataset(self, input_ids, targets=None):
        from datasets import Dataset

        chunks, owner = chunk_rows(
            input_ids, self.tokenizer, self.blocks_tokenizer, self.shared, self.max_length
        )
        columns = {"input_ids": chunks, "attention_mask": [[1] * len(c) for c in chunks]}
        if targets is not None:
            columns["labels"] = [targets[b].astype(np.float32).tolist() for b in owner]
        return Dataset.from_dict(columns), owner

    def fit(self, input_ids, targets: np.ndarray, seed: int) -> dict:
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        rng = np.random.default_rng(seed)
        order = rng.permutation(len(input_ids))
        n_val = max(2, len(order) // 10)  # MATES keeps 10% to choose the checkpoint
        val, train = order[:n_val], order[n_val:]
        train_set, _ = self._dataset([input_ids[i] for i in train], targets[train])
        val_set, val_owner = self._dataset([input_ids[i] for i in val], targets[val])
        val_targets = targets[val]

        def compute_metrics(prediction):
            per_block = mean_by_owner(np.asarray(prediction.predictions), val_owner, len(val))
            return {
                "spearman": float(
                    np.mean([spearman(per_block[:, t], val_targets[:, t]) for t in range(len(self.tasks))])
                )
            }

        scratch = tempfile.mkdtemp(prefix="codesift-predictor-")
        training_args = TrainingArguments(
            output_dir=scratch,
            learning_rate=self.args.learning_rate,
            num_train_epochs=self.args.num_train_epochs,
            per_device_train_batch_size=self.args.train_batch_size,
            per_device_eval_batch_size=self.args.batch_size,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="spearman",
            greater_is_better=True,
            save_only_model=True,
            report_to=[],
            seed=seed,
            disable_tqdm=not os.environ.get("CODESIFT_PROGRESS"),
            logging_strategy="epoch",
        )
        trainer = Trainer(
            model=self.model,
            args=training_args,
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            compute_metrics=compute_metrics,
        )
        trainer.train()
        history = [r for r in trainer.state.log_history if "eval_spearman" in r]
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
        return {"validation_spearman_by_epoch": [r["eval_spearman"] for r in history]}

    def predict(self, input_ids) -> np.ndarray:
        import torch

        dataset, owner = self._dataset(input_ids)
        device = next(self.model.parameters()).device
        self.model.eval()
        outputs = []
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(dataset), self.args.batch_size):
            rows = dataset[start : start + self.args.batch_size]["input_ids"]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(rows):
                ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            outputs.append(logits.float().cpu().numpy())
        return mean_by_owner(np.concatenate(outputs), owner, len(input_ids))

    def save(self, path: Path) -> None:
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    @classmethod
    def load(cls, path: Path, args, blocks_tokenizer, tasks, seq_len):
        import dataclasses

        return cls(dataclasses.replace(args, model_name_or_path=str(path)), blocks_tokenizer, tasks, seq_len)
