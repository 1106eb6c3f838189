"""The math of picochat: one named function per equation of the math foundations.

Every equation the package uses lives here once, with the formula in its docstring. Where a fused PyTorch
kernel is faster, the function calls it; inside `with textbook_mode():` (`--textbook`, `GPT.textbook`) it
computes the formula written out, so a debugger steps through every equation. docs/math.md maps each
equation to its function and test (tests/test_equations.py), including where the source document slips:

- the causal mask blocks keys in the future, j > i (the document swaps the cases);
- bits per byte is total cross-entropy in nats / (ln 2 × UTF-8 bytes), not H / log2(256);
- perplexity is exp(mean cross-entropy in nats) (2^H only when H is measured in bits);
- AdamW's decoupled weight decay is scaled by the learning rate: θ ← θ − ηλθ − η·m̂/(√v̂ + ε).

Shapes: B batch, T time (query positions), S key positions, H heads, D head size, C channels, V vocab.
Functions accept any leading batch dimensions unless stated otherwise.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_textbook = False  # inside textbook_mode(): the formulas written out, not the fused kernels


@contextlib.contextmanager
def textbook_mode(enabled: bool = True) -> Iterator[None]:
    """Within this block the functions below compute their formulas step by step (one thread at a time)."""
    global _textbook
    before, _textbook = _textbook, enabled
    try:
        yield
    finally:
        _textbook = before


def in_textbook_mode() -> bool:
    return _textbook


def at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    """fp32 for low-precision dtypes, the dtype itself for fp32/fp64: losses and softmaxes run here."""
    return torch.promote_types(dtype, torch.float32)


# --- 1. Linear algebra --------------------------------------------------------------------------------------


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Linear layer: y = W x + b, with W of shape (d_out, d_in) applied to the last axis of x."""
    return F.linear(x, weight, bias)


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product: a · b = Σ_i a_i b_i (over the last axis)."""
    return (a * b).sum(dim=-1)


def l2_norm(x: Tensor) -> Tensor:
    """L2 norm: ||x||_2 = sqrt(Σ_i x_i²) (over the last axis)."""
    return torch.sqrt((x * x).sum(dim=-1))


def normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Unit-length normalisation: normalize(x) = x / ||x||_2 (eps guards the zero vector)."""
    return x / l2_norm(x).clamp_min(eps).unsqueeze(-1)


# --- 2. Probability and information theory ------------------------------------------------------------------


def softmax(x: Tensor, temperature: float = 1.0, dim: int = -1) -> Tensor:
    """Softmax with temperature: softmax(x / T)_i = exp(x_i / T) / Σ_j exp(x_j / T), max subtracted."""
    if temperature <= 0:
        raise ValueError(f"softmax temperature must be > 0, got {temperature}")
    z = x / temperature
    z = z - z.amax(dim=dim, keepdim=True)
    e = torch.exp(z)
    return e / e.sum(dim=dim, keepdim=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Log-softmax: log softmax(x)_i = x_i − log Σ_j exp(x_j), computed stably via logsumexp."""
    return x - torch.logsumexp(x, dim=dim, keepdim=True)


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -1, reduction: str = "mean") -> Tensor:
    """Cross-entropy: H(q, p) = −Σ_x q(x) log p(x); for a one-hot target L = −log p(target), in fp32.
    `ignore_index` targets count nowhere; `reduction`: 'mean' (per counted token), 'sum' or 'none'."""
    if _textbook:
        log_p = log_softmax(logits.to(at_least_fp32(logits.dtype)))  # (..., V)
        counted = targets != ignore_index
        nats = -log_p.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1) * counted  # (...)
        if reduction == "none":
            return nats
        return nats.sum() if reduction == "sum" else nats.sum() / counted.sum()
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).to(at_least_fp32(logits.dtype)),
        targets.reshape(-1),
        ignore_index=ignore_index,
        reduction=reduction,
    ).reshape(targets.shape if reduction == "none" else ())


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL divergence: D_KL(p || q) = Σ_x p(x) log(p(x) / q(x)), from log-probabilities (last axis)."""
    p = torch.exp(log_p)
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1)


def entropy(p: Tensor, base: float = 2.0) -> Tensor:
    """Entropy: H(p) = −Σ_x p(x) log_b p(x); bits for base 2, nats for base e (last axis)."""
    logs = torch.where(p > 0, torch.log(p), torch.zeros_like(p))
    return -(p * logs).sum(dim=-1) / math.log(base)


def perplexity(mean_nats: float | Tensor) -> float | Tensor:
    """Perplexity: PPL = exp(H), with H the mean cross-entropy per token in nats (= 2^H for H in bits)."""
    return torch.exp(mean_nats) if isinstance(mean_nats, Tensor) else math.exp(mean_nats)


def bits_per_byte(total_nats: float, total_bytes: int) -> float:
    """Bits per byte: BPB = Σ cross-entropy (nats) / (ln 2 × UTF-8 bytes): fair across tokenizers."""
    if total_bytes <= 0:
        raise ValueError(f"bits_per_byte needs a positive byte count, got {total_bytes}")
    return float(total_nats) / (math.log(2) * total_bytes)


# --- 3. Optimisation basics ---------------------------------------------------------------------------------


def gradient_descent_step(theta: Tensor, grad: Tensor, lr: float) -> Tensor:
    """Gradient descent: θ_{t+1} = θ_t − η ∇L(θ_t)."""
    return theta - lr * grad


# --- 4. Activations and normalisation -----------------------------------------------------------------------


def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(0, x)."""
    return torch.clamp_min(x, 0.0)


def relu_squared(x: Tensor) -> Tensor:
    """Squared ReLU: ReLU²(x) = max(0, x)², the MLP non-linearity of the model."""
    return relu(x) * relu(x) if _textbook else torch.square(F.relu(x))


def gelu(x: Tensor) -> Tensor:
    """GELU(x) = x · Φ(x), with Φ the standard normal CDF: Φ(x) = ½(1 + erf(x / √2))."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def tanh(x: Tensor) -> Tensor:
    """tanh(x) = (e^x − e^−x) / (e^x + e^−x), as sign(x) (1 − e^−2|x|)/(1 + e^−2|x|): no overflow."""
    e = torch.exp(-2.0 * x.abs())
    return torch.sign(x) * (1.0 - e) / (1.0 + e)


def layer_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm(x) = γ ⊙ (x − μ) / sqrt(σ² + ε) + β, μ and σ² the mean and biased variance (last axis)."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def rms_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """RMSNorm(x) = x / sqrt((1/d) Σ_i x_i² + ε), over the last axis, with no learnable parameters."""
    if _textbook:
        return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    return F.rms_norm(x, (x.size(-1),), eps=eps)


def logit_softcap(logits: Tensor, cap: float) -> Tensor:
    """Logit soft-capping: cap · tanh(z / cap); compiled on a CPU, tanh is `tanh_rational` (docs/model.md)."""
    if _textbook:
        return cap * tanh(logits / cap)
    if logits.device.type == "cpu" and torch.compiler.is_compiling():
        return _RationalSoftcap.apply(logits, cap)
    return cap * torch.tanh(logits / cap)


class _RationalSoftcap(torch.autograd.Function):
    """cap · tanh(z / cap) through `tanh_rational`; the backward recomputes tanh from z rather than keeping
    a second (…, V) tensor: d/dz cap · tanh(z / cap) = 1 − tanh²(z / cap)."""

    @staticmethod
    def forward(ctx, z: Tensor, cap: float) -> Tensor:
        ctx.save_for_backward(z)
        ctx.cap = cap
        return cap * tanh_rational(z / cap)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (z,) = ctx.saved_tensors
        t = tanh_rational(z / ctx.cap)
        return grad * (1.0 - t * t), None


# tanh(x) ≈ x · P(x²) / Q(x²) for |x| ≤ TANH_BOUND, and ±1 beyond (tanh(9) = 1 − 3·10⁻⁸, under half an
# fp32 step below 1). P and Q have degree 4 in x², coefficients lowest first: the minimax fit of
# tests/derivations.py's `tanh_rational_fit()`, rounded to 10 significant digits (tests/test_equations.py
# re-derives them). Largest error 1.9·10⁻⁸ in float64; evaluated in fp32, 4·10⁻⁷.
TANH_BOUND = 9.0
TANH_P = (0.9999999067, 0.133731736, 0.003486551707, 2.047128638e-05, 1.318340706e-08)
TANH_Q = (1.0, 0.4670647057, 0.02584186823, 0.0003271333786, 7.70234119e-07)


def tanh_rational(x: Tensor, P: Sequence[float] = TANH_P, Q: Sequence[float] = TANH_Q) -> Tensor:
    """tanh(x) ≈ x · P(x²) / Q(x²) (`TANH_P`, `TANH_Q`) for x clamped to ±9: nine multiply-adds and a
    division that a compiler fuses; the result is clamped to [−1, 1] against fp32 rounding."""
    x = x.clamp(-TANH_BOUND, TANH_BOUND)
    s = x * x
    num, den = P[-1], Q[-1]
    for p, q in zip(P[-2::-1], Q[-2::-1]):
        num, den = num * s + p, den * s + q  # Horner's rule
    return (x * num / den).clamp(-1.0, 1.0)


# --- 5. Attention -------------------------------------------------------------------------------------------


def causal_mask(T: int, S: int | None = None, device=None) -> Tensor:
    """Causal mask (T, S): 0 if j ≤ i, −∞ if j > i; with S > T cached keys, query i sits at S − T + i."""
    S = T if S is None else S
    i = torch.arange(T, device=device).unsqueeze(1) + (S - T)
    j = torch.arange(S, device=device).unsqueeze(0)
    return torch.zeros(T, S, device=device).masked_fill(j > i, float("-inf"))


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + mask) V; q (..., T, d_k), k, v (..., S, d)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., T, S)
    if mask is not None:
        scores = scores + mask
    return softmax(scores.to(at_least_fp32(scores.dtype)), dim=-1).to(v.dtype) @ v  # (..., T, d_v)


def attention(q: Tensor, k: Tensor, v: Tensor, visible: Tensor | None = None, causal: bool = False) -> Tensor:
    """Grouped-query attention: softmax(Q Kᵀ / √D + mask) V, query head h reading key/value head h // (H / G).
    q (B, H, T, D), k, v (B, G, S, D); `visible` a boolean mask (True: may attend), or `causal`."""
    # a branch, not bool(): where a compiler has made the head counts symbolic it guards on them, and SDPA
    # gets the plain bool it requires
    gqa = True if q.size(1) != k.size(1) else False  # noqa: SIM210
    if not _textbook:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=visible, is_causal=causal, enable_gqa=gqa)
    group = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, H, S, D)
    if causal:
        mask = causal_mask(q.size(2), k.size(2), device=q.device)  # (T, S)
    elif visible is not None:
        mask = torch.zeros(visible.shape, device=q.device).masked_fill(~visible, float("-inf"))
    else:
        mask = None
    return scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, D)


def multi_head_attention(
    x: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor, w_o: Tensor, n_head: int, causal: bool = True
) -> Tensor:
    """MultiHead(x) = Concat(head_1, …, head_h) W^O, head_i = Attention(x W^Q_i, x W^K_i, x W^V_i)."""
    B, T, _ = x.shape
    q = linear(x, w_q).view(B, T, n_head, -1).transpose(1, 2)  # (B, H, T, D)
    k = linear(x, w_k).view(B, T, n_head, -1).transpose(1, 2)
    v = linear(x, w_v).view(B, T, n_head, -1).transpose(1, 2)
    mask = causal_mask(T, device=x.device) if causal else None
    heads = scaled_dot_product_attention(q, k, v, mask)  # (B, H, T, D)
    return linear(heads.transpose(1, 2).reshape(B, T, -1), w_o)  # (B, T, C)


# --- 6. Positions -------------------------------------------------------------------------------------------


def sinusoidal_positions(T: int, d: int, base: float = 10000.0) -> Tensor:
    """PE(pos, 2i) = sin(pos / base^(2i/d)), PE(pos, 2i+1) = cos(pos / base^(2i/d)). Returns (T, d)."""
    pos = torch.arange(T, dtype=torch.float64).unsqueeze(1)
    two_i = torch.arange(0, d, 2, dtype=torch.float64)
    angle = pos / base ** (two_i / d)  # (T, d/2)
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)[:, : d // 2]
    return pe.float()


def rope_angles(T: int, head_dim: int, base: float = 10000.0, device=None) -> tuple[Tensor, Tensor]:
    """RoPE angles θ_{m,i} = m · base^(−2i/D) for positions m < T and pairs i < D/2. Returns cos, sin (T, D/2)."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(T, dtype=torch.float32, device=device), inv_freq)  # (T, D/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary position embedding: rotate each pair (x1_i, x2_i) = (x_i, x_{i+D/2}) by the angle θ_{m,i}:

        y1 = x1 cos θ + x2 sin θ,    y2 = −x1 sin θ + x2 cos θ.

    x (..., T, ..., D) with cos, sin broadcastable to (..., T, ..., D/2); q_m · k_n depends only on m − n.
    The half-split layout and signs of Hugging Face's `nanochat` architecture (rotate_half(x) = [x2, −x1])."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


# --- 7. Optimisers and learning-rate schedules --------------------------------------------------------------


def momentum_step(theta: Tensor, velocity: Tensor, grad: Tensor, lr: float, beta: float = 0.9):
    """Momentum: v_t = β v_{t−1} + (1 − β) g_t, θ_t = θ_{t−1} − η v_t. Returns (θ_t, v_t)."""
    velocity = beta * velocity + (1.0 - beta) * grad
    return theta - lr * velocity, velocity


def adamw_step(
    theta: Tensor,
    m: Tensor,
    v: Tensor,
    grad: Tensor,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
):
    """Adam / AdamW, one step t ≥ 1. Returns (θ_t, m_t, v_t).

        m_t = β1 m_{t−1} + (1 − β1) g_t,      v_t = β2 v_{t−1} + (1 − β2) g_t²
        m̂_t = m_t / (1 − β1^t),               v̂_t = v_t / (1 − β2^t)
        θ_t = (1 − η λ) θ_{t−1} − η m̂_t / (√v̂_t + ε)

    λ = 0 is Adam. The decay is scaled by η as in torch.optim.AdamW (the source document omits η)."""
    m = beta1 * m + (1.0 - beta1) * grad
    v = beta2 * v + (1.0 - beta2) * grad * grad
    m_hat = m / (1.0 - beta1**step)
    v_hat = v / (1.0 - beta2**step)
    theta = (1.0 - lr * weight_decay) * theta - lr * m_hat / (torch.sqrt(v_hat) + eps)
    return theta, m, v


def linear_warmup(step: float, warmup_steps: float, lr_max: float) -> float:
    """Linear warmup: η_t = η_max · min(1, t / T_warmup)."""
    return lr_max * min(1.0, step / warmup_steps) if warmup_steps > 0 else lr_max


def cosine_decay(step: float, total_steps: float, lr_max: float, lr_min: float = 0.0) -> float:
    """Cosine decay: η_t = η_min + ½ (η_max − η_min)(1 + cos(π t / T_max)), with t clamped to [0, T_max]."""
    t = min(max(step, 0.0), total_steps)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * t / total_steps))
