"""The predictors, one interface: fit(input_ids, z-scored targets, seed) -> info; predict(input_ids)
-> z-scored predictions (blocks, tasks); save(folder); load(folder, ...)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .features import frozen_encoder, hand_features, ngram_matrix
from .finetuned import FinetunedRegressor
from .labels import PredictorError
from .ridge import RidgeHead, fit_ridge

FEATURE_GROUPS = ("ngrams", "hand", "embeddings")
PREDICTORS = ("ridge", "finetuned")


class RidgePredictor:
    """Closed-form ridge on any of: hashed token n-grams (model-free), hand features (plus the
    block's own loss when the encoder is the LM), a frozen encoder's mean-pooled hidden states."""

    kind = "ridge"

    def __init__(self, args, blocks_tokenizer, tasks: list[str], head: RidgeHead | None = None):
        unknown = set(args.features) - set(FEATURE_GROUPS)
        if unknown or not args.features:
            raise PredictorError(f"ridge features must be some of {FEATURE_GROUPS}; got {args.features}")
        self.args, self.tasks, self.blocks_tokenizer, self.head = args, tasks, blocks_tokenizer, head
        self.groups = [g for g in FEATURE_GROUPS if g in args.features]
        needs_encoder = "embeddings" in self.groups or "hand" in self.groups
        self.encoder = None
        if needs_encoder and args.encoder:
            self.encoder = frozen_encoder(args.encoder, blocks_tokenizer, args.max_length)
        elif "embeddings" in self.groups:
            raise PredictorError("the embeddings features need an `encoder` (the LM checkpoint or a Hub id)")

    def features(self, input_ids) -> dict:
        input_ids = [list(ids) for ids in input_ids]
        out, batch = {}, self.args.batch_size
        if "ngrams" in self.groups:
            out["ngrams"] = ngram_matrix(input_ids, self.args.ngram_orders, self.args.hash_bits)
        embeddings, losses = [], []
        if self.encoder is not None:
            for start in range(0, len(input_ids), batch):
                emb, loss = self.encoder.embed(
                    input_ids[start : start + batch], with_loss="hand" in self.groups
                )
                embeddings.append(emb)
                losses.append(loss)
        if "embeddings" in self.groups:
            out["embeddings"] = np.concatenate(embeddings)
        if "hand" in self.groups:
            texts = self.blocks_tokenizer.batch_decode(input_ids)
            hand = hand_features(texts, input_ids)
            if losses and losses[0] is not None:  # the block's own loss: what a perplexity filter sees
                hand = np.concatenate([hand, np.concatenate(losses)[:, None]], axis=1)
            out["hand"] = hand
        return out

    def fit(self, input_ids, targets: np.ndarray, seed: int) -> dict:
        self.head = fit_ridge(self.features(input_ids), targets, list(self.args.alphas))
        return {
            "alphas": dict(zip(self.tasks, self.head.alphas, strict=True)),
            "group_weights": self.head.group_weights,
            "leave_one_out_mse": self.head.loo_mse,
        }

    def predict(self, input_ids) -> np.ndarray:
        return self.head.predict(self.features(input_ids))

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "ridge.npz", **self.head.arrays())
        (folder / "ridge.json").write_text(
            json.dumps({"groups": self.head.groups, "group_weights": self.head.group_weights}, indent=2)
            + "\n"
        )

    @classmethod
    def load(cls, folder: Path, args, blocks_tokenizer, tasks, seq_len):
        meta = json.loads((folder / "ridge.json").read_text())
        with np.load(folder / "ridge.npz") as arrays:
            head = RidgeHead.from_arrays(dict(arrays), meta["groups"], meta["group_weights"])
        return cls(args, blocks_tokenizer, tasks, head)


def make_predictor(args, blocks_tokenizer, tasks: list[str], seq_len: int):
    if args.predictor == "ridge":
        return RidgePredictor(args, blocks_tokenizer, tasks)
    if args.predictor == "finetuned":
        return FinetunedRegressor(args, blocks_tokenizer, tasks, seq_len)
    raise PredictorError(f"unknown predictor {args.predictor!r}; predictors: {', '.join(PREDICTORS)}")


def load_predictor(folder: Path, args, blocks_tokenizer, tasks: list[str], seq_len: int):
    cls = RidgePredictor if args.predictor == "ridge" else FinetunedRegressor
    return cls.load(Path(folder), args, blocks_tokenizer, tasks, seq_len)


def load_saved_predictor(folder, encoder: str | None = None):
    """(predictor, standardiser, tasks) from a stage-05 `predictor/` folder or its Hub export: the
    saved arguments, the blocks' tokenizer saved beside it, and `encoder` (a path or Hub id) in place
    of the recorded one when the embeddings' model lives elsewhere now."""
    import dataclasses

    from ..configs import PredictorArguments
    from ..prepare.tokenizer import load_tokenizer
    from .labels import Standardiser

    folder = Path(folder)
    meta_file = folder / "predictor.json"
    if not meta_file.is_file():
        raise PredictorError(f"no predictor.json in {folder}: not a stage-05 predictor")
    meta = json.loads(meta_file.read_text())
    known = {f.name for f in dataclasses.fields(PredictorArguments)}
    args = PredictorArguments(**{k: v for k, v in meta["arguments"].items() if k in known})
    if encoder is not None:
        args = dataclasses.replace(args, encoder=encoder)
    tokenizer = load_tokenizer(str(folder / "blocks_tokenizer"))
    tasks = meta["labels"]["tasks"]
    scale = meta["standardiser"]
    standardiser = Standardiser(np.asarray(scale["mean"]), np.asarray(scale["std"]))
    predictor = load_predictor(folder, args, tokenizer, tasks, meta["seq_len"])
    return predictor, standardiser, tasks
