"""Fast scores for many candidates from one forward and one backward (batched first-order scoring).

At batch 1 a fast score costs one backward per candidate, which leaves a GPU idle. Here a batch of
candidates shares one forward and backward; hooks on every module that owns a scored parameter
catch its input a and its output gradient delta, and form each candidate's gradient of that
module alone (for a linear layer sum_t delta_t a_t^T, as in per-example gradient and ghost-clipping
work), which is reduced at once to what the score needs:

- `grad_dot`, `adam_precond`, `adam_precond_clipped` are linear in the candidate's gradient, so each
  layer adds <u_task, g_layer> to the score (u_task = lr * P * g_task) and ||g_layer||^2 to the norm
  the clipped variant divides by: memory is the batch times ONE layer, never the batch times the
  model;
- `adam_update` is not linear in the gradient (g / sqrt(v + c g^2)) and its clipping needs the whole
  norm first, so the per-candidate gradients of all layers are kept (batch x parameters of memory;
  fine at small scale, `batch_size: 1` or a linear method at 1B).

Every method gives the same scores as batch 1, equal to rounding (tests/test_influence.py).
"""

from __future__ import annotations

import torch

from ..modeling import block_losses
from .fast import FirstOrderScorer
from .validation import InfluenceError


def per_example_grads(module, inputs: torch.Tensor, grad_out: torch.Tensor) -> dict[str, torch.Tensor]:
    """{parameter name: (batch, *parameter shape)} of one module, from its input and output gradient."""
    if isinstance(module, torch.nn.Linear):
        grads = {"weight": torch.einsum("bto,bti->boi", grad_out, inputs)}
        if module.bias is not None:
            grads["bias"] = grad_out.sum(1)
        return grads
    if isinstance(module, torch.nn.Embedding):
        batch, length = inputs.shape
        weight = torch.zeros(batch, *module.weight.shape, dtype=grad_out.dtype, device=grad_out.device)
        rows = torch.arange(batch, device=inputs.device).repeat_interleave(length)
        weight.index_put_((rows, inputs.reshape(-1)), grad_out.reshape(batch * length, -1), accumulate=True)
        return {"weight": weight}
    if hasattr(module, "variance_epsilon"):  # an RMSNorm: output = weight * x / rms(x)
        x = inputs.float()
        normed = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)).to(inputs.dtype)
        return {"weight": (grad_out * normed).sum(1)}
    raise InfluenceError(f"batched scoring cannot form per-example gradients of {type(module).__name__}")


def embedding_reduction(ids: torch.Tensor, grad_out: torch.Tensor, directions: torch.Tensor, norms: bool):
    """(dots (batch, tasks), squared norms (batch,) or None) of each example's embedding gradient
    without forming it: its rows are the summed output gradients of each distinct token id."""
    batch, length = ids.shape
    dots = torch.einsum("btd,kbtd->bk", grad_out, directions[:, ids])
    if not norms:
        return dots, None
    keys = (torch.arange(batch, device=ids.device)[:, None] * directions.shape[1] + ids).reshape(-1)
    unique, inverse = torch.unique(keys, return_inverse=True)
    rows = torch.zeros(len(unique), grad_out.shape[-1], dtype=grad_out.dtype, device=grad_out.device)
    rows.index_add_(0, inverse, grad_out.reshape(batch * length, -1))
    norm_sq = torch.zeros(batch, dtype=grad_out.dtype, device=grad_out.device)
    norm_sq.index_add_(0, unique // directions.shape[1], rows.pow(2).sum(1))
    return dots, norm_sq


class ScoresInBatches:
    """One candidate's score through `score_batch` (for the scorers that only score batches)."""

    def score(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        result = self.score_batch(input_ids.reshape(1, -1))
        return {"influence": result["influence"][0], "candidate_loss": result["candidate_loss"][0]}


class BatchedFirstOrderScorer(ScoresInBatches, FirstOrderScorer):
    """The fast scores of FirstOrderScorer, `batch_size` candidates per forward and backward."""

    def __init__(self, *args, batch_size: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        if batch_size < 1:
            raise InfluenceError(f"batch_size must be >= 1, not {batch_size}")
        self.batch_size = batch_size
        self.linear = self.method != "adam_update"
        self.clipped = bool(self.max_grad_norm) and self.method in ("adam_precond_clipped", "adam_update")
        self.modules = self._modules_of_scored_params()
        offsets, start = {}, 0
        for p in self.params:
            offsets[id(p)] = slice(start, start + p.numel())
            start += p.numel()
        self.offsets = offsets
        if self.linear:
            self.directions = self.linear_directions()

    def _modules_of_scored_params(self) -> list[tuple[torch.nn.Module, dict[str, torch.Tensor]]]:
        scored = {id(p) for p in self.params}
        found, covered = [], set()
        for module in self.model.modules():
            own = {name: p for name, p in module.named_parameters(recurse=False) if id(p) in scored}
            if own:
                found.append((module, own))
                covered |= {id(p) for p in own.values()}
        missing = scored - covered
        if missing:
            raise InfluenceError(
                f"{len(missing)} scored parameter(s) belong to no module batched scoring can read"
            )
        return found

    def score_batch(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"influence": (batch, tasks) float64, "candidate_loss": (batch,)} for a (batch, length) tensor."""
        batch = input_ids.shape[0]
        n_tasks = len(self.loss_before)
        dots = torch.zeros(batch, n_tasks, dtype=torch.float64, device=input_ids.device)
        norm_sq = torch.zeros(batch, dtype=torch.float64, device=input_ids.device)
        kept: dict[int, torch.Tensor] = {}  # adam_update: every scored parameter's per-example gradients

        def reduce(module, own, inputs, grad_out):
            if self.linear and isinstance(module, torch.nn.Embedding):
                p = own["weight"]
                directions = self.directions[:, self.offsets[id(p)]].reshape(-1, *p.shape).to(grad_out.dtype)
                layer_dots, layer_norms = embedding_reduction(inputs, grad_out, directions, self.clipped)
                dots.add_(layer_dots.double())
                if layer_norms is not None:
                    norm_sq.add_(layer_norms.double())
                return
            for name, grads in per_example_grads(module, inputs, grad_out).items():
                p = own.get(name)
                if p is None:
                    continue
                flat = grads.reshape(batch, -1)
                if self.clipped:
                    norm_sq.add_(torch.linalg.vector_norm(flat, dim=1).double().pow(2))
                if self.linear:
                    dots.add_((flat @ self.directions[:, self.offsets[id(p)]].T).double())
                else:
                    kept[id(p)] = flat

        handles = [self._leaf_hook()]
        for module, own in self.modules:

            def forward_hook(module, args, output, own=own):
                inputs = args[0].detach()
                if output.requires_grad:
                    output.register_hook(lambda grad: reduce(module, own, inputs, grad.detach()))

            handles.append(module.register_forward_hook(forward_hook))
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        try:
            # no parameter needs a gradient: the backward computes only the activations' gradients,
            # from which the hooks form the per-example ones (the summed weight gradients are skipped)
            with self.frozen():
                logits = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
                losses = block_losses(logits, input_ids)
                losses.sum().backward()  # each candidate's mean token loss, summed: its gradient is its own
        finally:
            for handle in handles:
                handle.remove()
        clip = torch.ones(batch, dtype=torch.float64, device=input_ids.device)
        if self.clipped:
            clip = torch.clamp(self.max_grad_norm / (norm_sq.sqrt() + 1e-6), max=1.0)
        if self.linear:
            influence = dots * clip[:, None]
        else:
            influence = self._adam_update_scores(kept, clip)
        return {"influence": influence.cpu(), "candidate_loss": losses.detach().double().cpu()}

    def _adam_update_scores(self, kept: dict[int, torch.Tensor], clip: torch.Tensor) -> torch.Tensor:
        grads = torch.cat([kept[id(p)] for p in self.params], dim=1)
        rows = []
        for i in range(grads.shape[0]):
            delta = self.adam_step(grads[i] * float(clip[i]))
            rows.append(-(self.task_grads @ delta.to(self.task_grads.dtype)).double())
        return torch.stack(rows)

    def _leaf_hook(self):
        """Where the backward starts: the embeddings' output, or the input of the lowest scored layer."""

        def as_leaf(tensor):
            return tensor.detach().requires_grad_(True)

        if self.top_layers is None:
            return self.model.get_input_embeddings().register_forward_hook(
                lambda module, args, output: as_leaf(output)
            )
        lowest = self.model.get_decoder().layers[self.model.config.num_hidden_layers - self.top_layers]

        def pre_hook(module, args, kwargs):
            if args:
                return (as_leaf(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": as_leaf(kwargs["hidden_states"])}

        return lowest.register_forward_pre_hook(pre_hook, with_kwargs=True)


STEP_FRACTION = 1.0  # one Adam step: smaller steps drown the difference in float32 rounding (measured)


class ForwardDifferenceScorer(ScoresInBatches, FirstOrderScorer):
    """`adam_precond`'s score without a backward pass: the candidate's loss is differentiated along
    each task's preconditioned gradient u = lr * P * g_task by central differences,

        score = <u, g_x> ~ (L_x(theta + h u) - L_x(theta - h u)) / 2h,

    with h set so that h * u moves the weights as far as one Adam step (every weight by about lr);
    at a hundredth of that, float32 rounding swamped the difference (on the tiny recipe's earlier
    Python-only corpus, Spearman 0.99 / -0.19 against adam_precond, against 1.00 / 0.997 at one step).
    Two no-grad forwards of the batch per task and no activation memory: it pays where tasks are
    few or memory is short; its fidelity against exact is measured in bench_influence.
    `candidate_loss` is the mean of the two shifted losses (the loss to O(h^2))."""

    def __init__(self, model, optimizer, validation, max_grad_norm, batch_size: int = 16):
        super().__init__(model, optimizer, validation, max_grad_norm, "adam_precond")
        self.method, self.batch_size = "adam_precond_forward", batch_size
        self.directions = self.linear_directions()
        step_norm = STEP_FRACTION * float(self.lr.max()) * self.directions.shape[1] ** 0.5
        self.shifts = [step_norm / max(float(d.norm()), 1e-30) for d in self.directions]
        self.weights = [p.detach().clone() for p in self.params]

    def _move(self, task: int | None, h: float = 0.0) -> None:
        """Weights = saved + h * u_task (from the saved copy, so nothing drifts); None restores."""
        offset = 0
        with torch.no_grad():
            for p, saved in zip(self.params, self.weights, strict=True):
                if task is None:
                    p.copy_(saved)
                else:
                    p.copy_(saved + h * self.directions[task, offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def _losses(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
        return block_losses(logits, input_ids).double()

    def score_batch(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        self.model.train()
        columns, centre = [], torch.zeros(input_ids.shape[0], dtype=torch.float64, device=input_ids.device)
        try:
            with torch.no_grad():
                for task, h in enumerate(self.shifts):
                    self._move(task, h)
                    plus = self._losses(input_ids)
                    self._move(task, -h)
                    minus = self._losses(input_ids)
                    columns.append((plus - minus) / (2 * h))
                    centre += (plus + minus) / 2
        finally:
            self._move(None)
        return {
            "influence": torch.stack(columns, 1).cpu(),
            "candidate_loss": (centre / len(self.shifts)).cpu(),
        }
