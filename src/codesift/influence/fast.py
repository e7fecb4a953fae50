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
instead of a validation forward per candidate.
"""

from __future__ import annotations

import torch

from .exact import require_optimizer_state, trainable_params
from .validation import InfluenceError, ValidationBatches, flatten_grads

FAST_METHODS = ("grad_dot", "adam_precond", "adam_precond_clipped", "adam_update")


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


class FirstOrderScorer:
    """-<g_task, delta(x)> for every task at once: a (tasks x parameters) matrix times a vector."""

    def __init__(
        self, model, optimizer, validation: ValidationBatches, max_grad_norm: float | None, method: str
    ):
        if method not in FAST_METHODS:
            raise InfluenceError(f"unknown fast method {method!r}; methods: {', '.join(FAST_METHODS)}")
        if method != "grad_dot":
            require_optimizer_state(optimizer)
        self.model, self.optimizer, self.method, self.max_grad_norm = model, optimizer, method, max_grad_norm
        self.params = trainable_params(optimizer)
        self.task_grads = validation.gradients(model, self.params)  # once per checkpoint
        self.loss_before = validation.losses(model)
        self._prepare_update_terms()

    def _group_values(self, key: str, default=0.0) -> torch.Tensor:
        """A per-parameter hyperparameter (lr, weight decay, ...) spread over the flat vector."""
        return _flat(
            torch.full_like(p, float(group.get(key, default)))
            for group in self.optimizer.param_groups
            for p in group["params"]
            if p.requires_grad
        )

    def _prepare_update_terms(self) -> None:
        self.lr = self._group_values("lr")
        if self.method == "grad_dot":
            return
        group = self.optimizer.param_groups[0]
        self.beta1, self.beta2 = group["betas"]
        self.eps = group["eps"]
        state = [self.optimizer.state[p] for p in self.params]
        step = float(state[0]["step"]) + 1  # the step the probe would take
        self.bias1, self.bias2 = 1 - self.beta1**step, 1 - self.beta2**step
        self.exp_avg = _flat(s["exp_avg"] for s in state)
        self.exp_avg_sq = _flat(s["exp_avg_sq"] for s in state)
        # the preconditioner of the current moments (the candidate's own g^2 term is left out)
        self.precond = 1.0 / (
            (self.exp_avg_sq / (1 - self.beta2 ** (step - 1) if step > 1 else 1.0)).sqrt() + self.eps
        )
        self.weight_decay = self._group_values("weight_decay")
        self.weights = _flat(p.detach() for p in self.params)
        # adam_update's candidate-free parts, once: the update is (a + b g) / (sqrt(c + d g^2) + eps)
        # plus weight decay, so each candidate costs a few fused passes over the parameters
        self.momentum_term = self.beta1 * self.exp_avg / self.bias1
        self.variance_term = self.beta2 * self.exp_avg_sq / self.bias2
        self.decay_term = self.weight_decay * self.weights

    def candidate_gradient(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        batch = input_ids.reshape(1, -1)
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
        # m/bias1 = momentum_term + (1-beta1)/bias1 g;  v/bias2 = variance_term + (1-beta2)/bias2 g^2
        denominator = torch.addcmul(self.variance_term, grad, grad, value=(1 - self.beta2) / self.bias2)
        denominator.sqrt_().add_(self.eps)
        update = torch.add(self.momentum_term, grad, alpha=(1 - self.beta1) / self.bias1).div_(denominator)
        return update.add_(self.decay_term).mul_(self.lr).neg_()

    def score(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        change = self.task_grads @ self.delta(self.candidate_gradient(input_ids)).to(self.task_grads.dtype)
        return {"influence": -change.double().cpu(), "candidate_loss": torch.tensor(self.candidate_loss)}
