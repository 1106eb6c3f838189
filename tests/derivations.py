"""Where the package's coefficient tables come from: the derivations, run by the tests that check the tables.

    newton_schulz_schedule(0.003, 4)   Muon's Newton–Schulz quintics, `optim.NEWTON_SCHULZ_COEFFS`
    tanh_rational_fit()                the soft-cap's rational tanh, `equations.TANH_P` and `TANH_Q`

Both are minimax fits in float64 (the best worst-case error on an interval), computed once; the package
keeps the rounded tables, so that training never depends on these routines.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from picochat.equations import TANH_BOUND


def minimax_odd_quintic(lo: float, hi: float, iterations: int = 50) -> tuple[float, float, float]:
    """The odd quintic p(s) = a·s + b·s³ + c·s⁵ closest to 1 on [lo, hi] in the maximum norm.

    Remez exchange: guess four points lo = s₀ < s₁ < s₂ < s₃ = hi, solve p(sᵢ) + (−1)ⁱE = 1 for (a, b, c, E)
    (the error 1 − p alternates with equal size E there), move the points to the extrema of the new error
    on a dense grid, repeat until they stay. By the equioscillation theorem the fixed point is the
    minimax polynomial.
    """
    f64 = torch.float64
    geometric = lo * (hi / lo) ** torch.linspace(0, 1, 8193, dtype=f64)  # dense near lo, where 1 − p is steep
    grid = torch.cat([geometric, torch.linspace(lo, hi, 8193, dtype=f64)]).sort().values
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=f64)
    points = lo + (hi - lo) * (1 - torch.cos(torch.arange(4, dtype=f64) * math.pi / 3)) / 2
    for _ in range(iterations):
        system = torch.stack([points, points**3, points**5, signs], dim=1)  # (4, 4)
        a, b, c, _ = torch.linalg.solve(system, torch.ones(4, dtype=f64)).tolist()
        error = 1 - (a * grid + b * grid**3 + c * grid**5)
        moved = grid[alternating_extrema(error, 4)]
        if torch.equal(moved, points):
            break
        points = moved
    return a, b, c


def alternating_extrema(error: Tensor, count: int) -> list[int]:
    """Indices of `count` extrema of `error` alternating in sign: the largest of each run of one sign, the
    smaller end dropped while there are too many."""
    slope = error.diff()
    turning = torch.nonzero(slope[:-1] * slope[1:] <= 0).flatten() + 1
    extrema: list[int] = []
    for i in [0, *turning.tolist(), len(error) - 1]:
        if extrema and (error[extrema[-1]] > 0) == (error[i] > 0):
            if error[i].abs() > error[extrema[-1]].abs():
                extrema[-1] = i
        else:
            extrema.append(i)
    while len(extrema) > count:
        extrema.pop(0 if error[extrema[0]].abs() < error[extrema[-1]].abs() else -1)
    return extrema


def newton_schulz_schedule(
    lower: float, steps: int, safety: float = 1.01
) -> tuple[tuple[float, float, float], ...]:
    """Coefficients (a, b, c) for each Newton–Schulz iteration, chosen greedily: singular values start in
    [lower, 1]; each iteration's quintic is the minimax one for the interval the previous ones left them in
    (`minimax_odd_quintic`), and the next interval is that quintic's range over it. Every iteration but the
    last evaluates its quintic at s / `safety`, so that rounding cannot push a value past the interval's
    top. (The greedy composition is the best one for its interval: Amsel et al., "The Polar Express".)
    """
    lo, hi = lower, 1.0
    schedule = []
    for k in range(steps):
        a, b, c = minimax_odd_quintic(lo, hi)
        if k < steps - 1:
            a, b, c = a / safety, b / safety**3, c / safety**5
        schedule.append((a, b, c))
        s = torch.linspace(lo, hi, 100_001, dtype=torch.float64)
        values = a * s + b * s**3 + c * s**5
        lo, hi = values.min().item(), values.max().item()
    return tuple(schedule)


def tanh_rational_fit(degree: int = 4, bound: float = TANH_BOUND, rounds: int = 60) -> tuple[Tensor, Tensor]:
    """Coefficients (P, Q), lowest first, Q[0] = 1, of the rational x · P(x²) / Q(x²) closest to tanh on
    [0, bound] in the maximum norm (odd, so the same on [−bound, 0]).

    Each round solves a linear least-squares problem: x · P(s) − tanh(x) · (Q(s) − 1) = tanh(x), rows
    divided by the previous round's Q (so the residual is the error of P/Q itself) and weighted; the weights
    grow where the error is largest (Lawson's iteration), which drives the fit from least squares towards
    equal ripples, the minimax shape. On Chebyshev points.
    """
    f64 = torch.float64
    x = (1 + torch.cos(torch.linspace(0, math.pi, 8001, dtype=f64))) * bound / 2
    t, s = torch.tanh(x), x * x
    powers = torch.stack([s**i for i in range(degree + 1)], dim=1)  # (n, degree + 1)
    A = torch.cat([x[:, None] * powers, -t[:, None] * powers[:, 1:]], dim=1)
    weight, den = torch.ones_like(x), torch.ones_like(x)
    for _ in range(rounds):
        row = weight / den
        coef = torch.linalg.lstsq(A * row[:, None], (t * row)[:, None], driver="gelsd").solution[:, 0]
        P, Q = coef[: degree + 1], torch.cat([coef.new_ones(1), coef[degree + 1 :]])
        den = powers @ Q
        error = (x * (powers @ P) / den - t).abs()
        weight = weight * (error / error.max()).sqrt() + 1e-12
        weight = weight / weight.max()
    return P, Q
