"""First-order estimates of the exact score (beyond the paper; fidelity measured against it).

One step moves the weights by delta(x); to first order a task's loss changes by <g_task, delta(x)>,
so  score(x) ~ -<g_task, delta(x)>. The variants differ in how delta(x) is modelled:

- `grad_dot`:              delta = -lr * g_x                      (SGD; needs no optimizer state)
- `adam_precond`:          delta = -lr * P g_x, P = 1/(sqrt(v_hat) + eps)
- `adam_precond_clipped`:  the same with g_x clipped as the Trainer clips it
- `adam_update`:           the exact AdamW update from the moments, lr, betas, eps, weight decay,
                           bias correction and the clipped gradient (the candidate-free part of the
                           step, momentum and weight decay, is included: it shifts every candidate's
                           score alike, so the ranking comes from the candidate-dependent part)

Each needs one backward pass per candidate and one validation backward per task per checkpoint,
instead of a validation forward per candidate. Two ways to pay less (fidelity measured in
benchmarks/bench_influence.py):

- `top_layers=N`: only the top N decoder layers, the final norm and the output layer are scored, so
  the backward stops N layers down (a partial backward; an approximation of the same method);
- `batch_size>1` (batched.py): many candidates share one forward and backward and their per-example
  gradients are formed one layer at a time; the same quantity as batch 1, equal to rounding.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from .exact import require_optimizer_state, trainable_params
from .validation import InfluenceError, OneAtATime, ValidationBatches, flatten_grads

FAST_METHODS = {  # name: how the step delta(x) is modelled (the docstring above says more)
    "grad_dot": "delta = -lr * g_x (SGD; needs no optimizer state)",
    "adam_precond": "delta = -lr * g_x / (sqrt(v_hat) + eps)",
    "adam_precond_clipped": "adam_precond with g_x clipped as the Trainer clips it",
    "adam_update": "the exact AdamW update from the moments and the clipped gradient",
}
TOP_LEVEL_PARAMS = ("model.norm.", "lm_head.")  # scored with every top_layers choice


def scored_params(model, optimizer, top_layers: int | None) -> list[torch.Tensor]:
    """The optimizer's trainable parameters, or only those of the top `top_layers` decoder layers,
    the final norm and the output layer."""
    params = trainable_params(optimizer)
    if top_layers is None:
        return params
    n_layers = model.config.num_hidden_layers
    if not 1 <= top_layers <= n_layers:
        raise InfluenceError(
            f"top_layers must be between 1 and {n_layers} (the model's layers), not {top_layers}"
        )
    keep = tuple(f"model.layers.{i}." for i in range(n_layers - top_layers, n_layers)) + TOP_LEVEL_PARAMS
    wanted = {id(p) for name, p in model.named_parameters() if name.startswith(keep)}
    return [p for p in params if id(p) in wanted]


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class FirstOrderScorer(OneAtATime):
    """-<g_task, delta(x)> for every task at once: a (tasks x parameters) matrix times a vector."""

    def __init__(
        self,
        model,
        optimizer,
        validation: ValidationBatches,
        max_grad_norm: float | None,
        method: str,
        top_layers: int | None = None,
    ):
        if method not in FAST_METHODS:
            raise InfluenceError(f"unknown fast method {method!r}; methods: {', '.join(FAST_METHODS)}")
        if method != "grad_dot":
            require_optimizer_state(optimizer)
        self.model, self.optimizer, self.method, self.max_grad_norm = model, optimizer, method, max_grad_norm
        self.params = scored_params(model, optimizer, top_layers)
        self.top_layers = top_layers
        self.task_grads = validation.gradients(model, self.params)  # once per checkpoint
        self.loss_before = validation.losses(model)
        self._prepare_update_terms()

    def _group_values(self, key: str, default=0.0) -> torch.Tensor:
        """A per-parameter hyperparameter (lr, weight decay, ...): a scalar when every group shares
        it (no parameter-sized copy), else spread over the flat vector."""
        group_of = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
        values = [float(group_of[id(p)].get(key, default)) for p in self.params]
        if len(set(values)) == 1:
            return torch.tensor(values[0], device=self.params[0].device)
        return _flat(torch.full_like(p, value) for p, value in zip(self.params, values, strict=True))

    def _prepare_update_terms(self) -> None:
        """Only what the method needs, each one parameter-sized vector at most: at 1B every flat
        copy is 4.4 GB (the moments and weights themselves are not copied)."""
        self.lr = self._group_values("lr")
        if self.method == "grad_dot":
            return
        group = self.optimizer.param_groups[0]
        self.beta1, self.beta2 = group["betas"]
        self.eps = group["eps"]
        state = [self.optimizer.state[p] for p in self.params]
        step = float(state[0]["step"]) + 1  # the step the probe would take
        self.bias1, self.bias2 = 1 - self.beta1**step, 1 - self.beta2**step
        if self.method != "adam_update":
            # the preconditioner of the current moments (the candidate's own g^2 term is left out)
            corrected = 1 - self.beta2 ** (step - 1) if step > 1 else 1.0
            self.precond = (
                _flat(s["exp_avg_sq"] for s in state).div_(corrected).sqrt_().add_(self.eps).reciprocal_()
            )
            return
        # adam_update's candidate-free parts, once: the update is (a + b g) / (sqrt(c + d g^2) + eps)
        # plus weight decay, so each candidate costs a few fused passes over the parameters (in the
        # same order of operations as before, so the scores are the same to the last bit)
        self.momentum_term = _flat(s["exp_avg"] for s in state).mul_(self.beta1).div_(self.bias1)
        self.variance_term = _flat(s["exp_avg_sq"] for s in state).mul_(self.beta2).div_(self.bias2)
        self.decay_term = _flat(p.detach() for p in self.params).mul_(self._group_values("weight_decay"))

    @contextmanager
    def frozen(self, keep=()):
        """Every parameter outside `keep` takes no gradient for the duration (given back after):
        the backward stops below the lowest one that does."""
        kept = {id(p) for p in keep}
        frozen = [p for p in self.model.parameters() if p.requires_grad and id(p) not in kept]
        for p in frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def linear_directions(self) -> torch.Tensor:
        """u_task = lr * P * g_task (P = 1 for grad_dot): the linear methods' score is <u_task, g>.
        Made in place from the task gradients, which are dropped (at 1B each is 4.4 GB)."""
        scale = self.lr if self.method == "grad_dot" else self.lr * self.precond
        directions = self.task_grads.mul_(scale.to(self.task_grads.dtype))
        self.task_grads = self.precond = None
        return directions

    def candidate_gradient(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        batch = input_ids.reshape(1, -1)
        with self.frozen(keep=self.params):
            loss = self.model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
            loss.backward()
        self.candidate_loss = float(loss.detach())  # free here; the perplexity baseline ranks by it
        grad = flatten_grads(self.params)
        self.model.zero_grad(set_to_none=True)
        return grad

    def clip(self, grad: torch.Tensor) -> torch.Tensor:
        if not self.max_grad_norm:
            return grad
        return grad * min(1.0, self.max_grad_norm / (float(grad.norm()) + 1e-6))

    def delta(self, grad: torch.Tensor) -> torch.Tensor:
        """The modelled weight change of one step on a candidate with this gradient."""
        if self.method == "grad_dot":
            return -self.lr * grad
        if self.method == "adam_precond":
            return -self.lr * self.precond * grad
        grad = self.clip(grad)
        if self.method == "adam_precond_clipped":
            return -self.lr * self.precond * grad
        return self.adam_step(grad)

    def adam_step(self, grad: torch.Tensor) -> torch.Tensor:
        """AdamW's weight change for an already clipped gradient."""
        # m/bias1 = momentum_term + (1-beta1)/bias1 g;  v/bias2 = variance_term + (1-beta2)/bias2 g^2
        denominator = torch.addcmul(self.variance_term, grad, grad, value=(1 - self.beta2) / self.bias2)
        denominator.sqrt_().add_(self.eps)
        update = torch.add(self.momentum_term, grad, alpha=(1 - self.beta1) / self.bias1).div_(denominator)
        return update.add_(self.decay_term).mul_(self.lr).neg_()

    def score(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        change = self.task_grads @ self.delta(self.candidate_gradient(input_ids)).to(self.task_grads.dtype)
        return {"influence": -change.double().cpu(), "candidate_loss": torch.tensor(self.candidate_loss)}
