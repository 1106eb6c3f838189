"""Optimizers: Muon for the hidden weight matrices, AdamW for everything else, behind one object.

Muon (MomentUm Orthogonalized by Newton–Schulz) replaces each update by the nearest semi-orthogonal
matrix, U Vᵀ from the SVD U S Vᵀ of the momentum, so every direction moves the same amount and the hidden
matrices take a large, width-independent learning rate. Embeddings, the LM head and the model options'
scalars and gates train with AdamW (all of it with AdamW under --optimizer adamw, to compare).

Shapes: a weight matrix W is (rows, cols); K matrices of one shape stack into (K, rows, cols).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from picochat.model import GPT
from picochat.runtime import cpu_prefers_bf16

# Newton–Schulz coefficients, one (a, b, c) per iteration: p(s) = a·s + b·s³ + c·s⁵ applied to every
# singular value. Each row is the minimax quintic for the interval the rows before it leave the singular
# values in, so four iterations take every singular value in [0.003, 1] into [0.79, 1.21]. Each schedule is
# tests/derivations.py's `newton_schulz_schedule(0.003, n)`, rounded to 6 decimals (tests/test_optim.py);
# only the last row differs between them (it alone is not shrunk for rounding headroom). --ns-steps picks.
NEWTON_SCHULZ_SCHEDULES: dict[int, tuple[tuple[float, float, float], ...]] = {
    3: (
        (8.300667, -24.037545, 17.466134),
        (4.005857, -2.925287, 0.542360),
        (3.518856, -2.639027, 0.527991),
    ),
    4: (
        (8.300667, -24.037545, 17.466134),
        (4.005857, -2.925287, 0.542360),
        (3.484016, -2.561414, 0.502365),
        (2.515337, -1.861526, 0.442535),
    ),
    5: (
        (8.300667, -24.037545, 17.466134),
        (4.005857, -2.925287, 0.542360),
        (3.484016, -2.561414, 0.502365),
        (2.490433, -1.806779, 0.421057),
        (1.929742, -1.315599, 0.386520),
    ),
}
NEWTON_SCHULZ_COEFFS = NEWTON_SCHULZ_SCHEDULES[4]


class Muon(torch.optim.Optimizer):
    """Muon for 2-D weight matrices: Nesterov momentum, then orthogonalisation, then a shape-aware scale.

        M_t = μ M_{t−1} + (1 − μ) G_t                       (momentum, `equations.momentum_step`'s EMA)
        U_t = orthogonalize((1 − μ) G_t + μ M_t)            (Nesterov; plain momentum: orthogonalize(M_t))
        W_t = W_{t−1} (1 − η λ) − η · √max(1, rows/cols) · U_t

    The √(rows/cols) factor keeps the update's RMS comparable for tall matrices. `compile=True` updates the
    matrices of each shape stacked (`muon_update`) in one compiled program, so the element-wise work fuses;
    eagerly each matrix is updated in place, which spares stacking's copies. `stack` overrides that choice."""

    def __init__(
        self,
        params: Iterable[Tensor],
        *,
        lr: float,
        weight_decay: float,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: Sequence[tuple[float, float, float]] = NEWTON_SCHULZ_COEFFS,
        compile: bool = False,
        stack: bool | None = None,
    ):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.ns_coefficients = tuple(tuple(map(float, row)) for row in ns_coefficients)
        for p in (p for group in self.param_groups for p in group["params"] if p.ndim != 2):
            raise ValueError(f"Muon only takes 2-D matrices, got a parameter of shape {tuple(p.shape)}")
        self.stack = compile if stack is None else stack
        self.update = torch.compile(muon_update, fullgraph=True, dynamic=False) if compile else muon_update

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
            if self.stack:
                self._stacked_step(group, params)
            else:
                for p in params:
                    self._single_step(group, p)
        return loss

    def _single_step(self, group: dict, p: Tensor) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        g, buf = p.grad, self.state[p]["momentum_buffer"]
        buf.lerp_(g, 1.0 - mu)
        update = orthogonalize(g.lerp(buf, mu) if group["nesterov"] else buf, self.ns_coefficients)
        if wd:
            p.mul_(1.0 - lr * wd)
        p.add_(update, alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))

    def _stacked_step(self, group: dict, params: list[Tensor]) -> None:
        same_shape: dict[tuple, list[Tensor]] = {}
        for p in params:
            same_shape.setdefault((p.shape, p.dtype, p.device), []).append(p)
        for (_, _, device), params in same_shape.items():
            rates = torch.tensor([group["lr"], group["momentum"], group["weight_decay"]], dtype=torch.float32)
            self.update(
                params,
                [p.grad for p in params],
                [self.state[p]["momentum_buffer"] for p in params],
                *rates.to(device, non_blocking=True).unbind(0),
                group["nesterov"],
                self.ns_coefficients,
            )


def orthogonalize(
    G: Tensor, coefficients: Sequence[tuple[float, float, float]] = NEWTON_SCHULZ_COEFFS, eps: float = 1e-7
) -> Tensor:
    """Approximate U Vᵀ for G = U S Vᵀ by Newton–Schulz iterations X ← a X + (b A + c A²) X, A = X Xᵀ, one
    per row (a, b, c) of `coefficients`, on G scaled to spectral norm ≤ 1 and made wide; in fp32 a matrix
    twice as wide as tall iterates on its Gram matrix alone (`gram_newton_schulz`), in fewer products."""
    X = G.to(newton_schulz_dtype(G.device))
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    if X.dtype == torch.float32 and X.size(-1) >= 2 * X.size(-2):
        X = gram_newton_schulz(X, coefficients)
    else:
        for a, b, c in coefficients:
            A = X @ X.mT
            B = b * A + c * (A @ A)
            X = a * X + B @ X
    if transposed:
        X = X.mT
    return X.to(G.dtype)


def gram_newton_schulz(X: Tensor, coefficients: Sequence[tuple[float, float, float]]) -> Tensor:
    """The Newton–Schulz iterations of `orthogonalize` for a wide X (m × n, n ≥ 2m), carried out on m × m
    matrices only. Each iteration is X_{k+1} = P_k X_k with P_k = a_k I + b_k A_k + c_k A_k², a polynomial in
    A_k = X_k X_kᵀ, so X_k = Q_k X_0 with Q_{k+1} = P_k Q_k, and A_{k+1} = P_k A_k P_k (P_k is symmetric).
    X_0 is touched twice (A_0 = X_0 X_0ᵀ, then Q X_0) instead of twice per iteration: for s iterations
    2m²n + (4s − 3)m³ multiply-adds against s(2m²n + m³). fp32 only: in bf16 the recursion on A loses the
    spectrum (singular values far above 1 on low-rank gradients, where the plain iteration keeps them near 1).
    """
    A = X @ X.mT  # (m, m)
    eye = torch.eye(A.size(-1), dtype=A.dtype, device=A.device)
    Q = None
    for k, (a, b, c) in enumerate(coefficients):
        P = a * eye + b * A + c * (A @ A)
        Q = P if Q is None else P @ Q
        if k < len(coefficients) - 1:
            A = P @ A @ P
    return Q @ X


def muon_update(
    params: list[Tensor],
    grads: list[Tensor],
    buffers: list[Tensor],
    lr: Tensor,
    momentum: Tensor,
    weight_decay: Tensor,
    nesterov: bool,
    ns_coefficients: tuple[tuple[float, float, float], ...],
) -> None:
    """One Muon step for K stacked matrices of one shape, in place; 0-d tensor rates do not recompile."""
    G = torch.stack(grads)  # (K, r, c)
    M = torch.stack(buffers).lerp_(G, 1.0 - momentum)  # M_t = μ M_{t−1} + (1 − μ) G_t
    X = G.lerp(M, momentum) if nesterov else M
    if X.is_cuda:
        U = orthogonalize(X, ns_coefficients)  # one batched product per iteration for all K
    else:  # CPU matmul libraries run single products better than batched ones
        U = torch.stack([orthogonalize(x, ns_coefficients) for x in X.unbind(0)])
    rows, cols = G.shape[-2:]
    scale = math.sqrt(max(1.0, rows / cols))
    W = torch.stack(params)
    W = W * (1.0 - lr * weight_decay) - (lr * scale) * U.to(W.dtype)
    torch._foreach_copy_(buffers, list(M.unbind(0)))
    torch._foreach_copy_(params, list(W.unbind(0)))


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs and on CPUs whose bf16 matmuls are the faster ones (`runtime.cpu_prefers_bf16`), else fp32."""
    if device.type == "cuda" or (device.type == "cpu" and cpu_prefers_bf16()):
        return torch.bfloat16
    return torch.float32


class CombinedOptimizer:
    """Several torch optimizers stepped as one (Muon + AdamW); `initial_lr` keeps each group's base rate."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers
        for group in self.param_groups:
            group.setdefault("initial_lr", group["lr"])

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def set_lr_multiplier(self, factor: float) -> None:
        for group in self.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def set_muon_momentum(self, value: float) -> None:
        """Muon's momentum for the next steps (training ramps it up: `schedule.muon_momentum`)."""
        for opt in self.optimizers:
            if isinstance(opt, Muon):
                for group in opt.param_groups:
                    group["momentum"] = value

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        if len(states := state["optimizers"]) != len(self.optimizers):
            raise ValueError(
                f"optimizer state holds {len(states)} optimizers, expected {len(self.optimizers)}"
            )
        for opt, s in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(s)


def build_optimizer(
    model: GPT,
    *,
    embedding_lr: float,
    head_lr: float,
    matrix_lr: float,
    weight_decay: float,
    tokens_per_step: int | None,
    compile: bool,
    scalar_lr: float = 0.05,
    adamw_matrix_lr: float | None = None,
    ns_steps: int = 4,
) -> CombinedOptimizer:
    """Muon for the blocks' matrices, AdamW for the embeddings, LM head and the options' scalars and gates
    (rates scaled by width, batch). `adamw_matrix_lr`: the matrices with AdamW instead (--optimizer adamw),
    at that rate scaled by width like the other AdamW rates. `compile` only on a GPU: on a CPU inductor's
    stacked update has written NaNs (bench/results/model.md)."""
    scale = width_lr_scale(model.config.n_embd)
    batch_scale = batch_lr_scale(tokens_per_step) if tokens_per_step else 1.0
    roles = parameter_roles(model)
    adam_groups = [
        dict(params=roles["embedding"], lr=embedding_lr * scale * batch_scale, name="embedding"),
        dict(params=roles["lm_head"], lr=head_lr * scale * batch_scale, name="lm_head"),
        # half the token embedding's rate: that one is normalised after the lookup, a value table is not
        dict(params=roles["value_embeds"], lr=0.5 * embedding_lr * scale * batch_scale, name="value_embeds"),
        dict(params=roles["scalars"], lr=scalar_lr * batch_scale, name="scalars"),
    ]
    if adamw_matrix_lr is not None:
        lr = adamw_matrix_lr * scale * batch_scale
        adam_groups.append(dict(params=roles["matrices"], lr=lr, weight_decay=weight_decay, name="matrices"))
    on_gpu = model.lm_head.weight.is_cuda
    adam_groups = [group for group in adam_groups if group["params"]]
    adamw = torch.optim.AdamW(adam_groups, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0, fused=on_gpu)
    if adamw_matrix_lr is not None:
        return CombinedOptimizer([adamw])
    muon = Muon(
        roles["matrices"],
        lr=matrix_lr * batch_scale,
        weight_decay=weight_decay,
        ns_coefficients=NEWTON_SCHULZ_SCHEDULES[ns_steps],
        compile=compile and on_gpu,
    )
    for group in muon.param_groups:
        group["name"] = "matrices"
    return CombinedOptimizer([adamw, muon])


def parameter_roles(model: GPT) -> dict[str, list[Tensor]]:
    """Every parameter by how it trains: the blocks' matrices (Muon), and for AdamW the token embedding, the
    LM head, the value embeddings, and the scalars and gates of the model's options."""
    roles: dict[str, list[Tensor]] = {
        r: [] for r in ("matrices", "embedding", "lm_head", "value_embeds", "scalars")
    }
    for name, p in model.named_parameters():
        if name == "embed_tokens.weight":
            role = "embedding"
        elif name == "lm_head.weight":
            role = "lm_head"
        elif name.startswith("value_embeds."):
            role = "value_embeds"
        elif name.startswith("layers.") and p.ndim == 2 and "gate" not in name:
            role = "matrices"
        else:  # resid_lambdas, x0_lambdas, smear_*, backout_lambda, layers.*.ve_gate
            role = "scalars"
        roles[role].append(p)
    return roles


def width_lr_scale(n_embd: int, reference_width: int = 768) -> float:
    """AdamW learning rates shrink as 1/√(width / 768): the scale at which the base rates were tuned."""
    return (n_embd / reference_width) ** -0.5


def batch_lr_scale(tokens_per_step: int, reference_tokens: int = 2**19) -> float:
    """√(batch / reference), capped at 1: Adam-style step sizes grow as √batch (gradient noise ∝ 1/√batch)."""
    return min(1.0, math.sqrt(tokens_per_step / reference_tokens))
