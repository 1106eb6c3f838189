"""Muon, the combined optimizer, learning-rate scaling and schedules."""

import copy
import math

import pytest
import torch
from derivations import minimax_odd_quintic, newton_schulz_schedule

from picochat.model import GPT, GPTConfig
from picochat.optim import (
    NEWTON_SCHULZ_COEFFS,
    NEWTON_SCHULZ_SCHEDULES,
    CombinedOptimizer,
    Muon,
    build_optimizer,
    gram_newton_schulz,
    muon_update,
    orthogonalize,
    width_lr_scale,
)
from picochat.schedule import lr_multiplier, muon_momentum
from picochat.settings import TrainSettings
from picochat.training import stage_optimizer

# torch.optim.Muon's default: one quintic, five times (the comparisons below test Muon's step around it)
TORCH_MUON_COEFFS = ((3.4445, -4.7750, 2.0315),) * 5


def test_orthogonalize_approximates_u_vt():
    torch.manual_seed(0)
    for shape in [(32, 64), (64, 32), (48, 48)]:
        G = torch.randn(shape)
        U, S, Vh = torch.linalg.svd(G, full_matrices=False)
        exact = U @ Vh
        X = orthogonalize(G)
        # singular values pushed into a band around 1 (the quintic trades exactness for speed)
        s = torch.linalg.svdvals(X.float())
        assert s.min() > 0.5 and s.max() < 1.3, (s.min(), s.max())
        cos = (X.flatten() @ exact.flatten()) / (X.norm() * exact.norm())
        assert cos > 0.95


def test_gram_newton_schulz_is_the_plain_iteration():
    """Iterating on the Gram matrix alone gives the plain iteration's result: to rounding in float64 (the
    algebra is exact), within 1e-3 in fp32, on random and on low-rank gradient-like matrices (m × n, n ≥ 2m)."""

    def plain(X, coefficients):  # the textbook iteration, written out again
        for a, b, c in coefficients:
            A = X @ X.T
            X = a * X + (b * A + c * A @ A) @ X
        return X

    g = torch.Generator().manual_seed(0)
    for m, n in [(16, 32), (24, 96), (64, 256)]:
        low_rank = torch.randn(m, 4, generator=g) @ torch.randn(4, n, generator=g)
        for G in (
            torch.randn(m, n, generator=g, dtype=torch.float64),
            low_rank + 0.05 * torch.randn(m, n, generator=g),
        ):
            X = (G / G.norm()).double()
            want = plain(X, NEWTON_SCHULZ_COEFFS)
            assert (gram_newton_schulz(X, NEWTON_SCHULZ_COEFFS) - want).norm() / want.norm() < 1e-10
            got32 = gram_newton_schulz(X.float(), NEWTON_SCHULZ_COEFFS).double()
            assert (got32 - want).norm() / want.norm() < 1e-3
            for first in (1, 2):
                rows = NEWTON_SCHULZ_COEFFS[:first]
                assert torch.allclose(gram_newton_schulz(X, rows), plain(X, rows), atol=1e-12)


def test_minimax_odd_quintic_equioscillates_and_cannot_be_bettered():
    """The Remez result is the minimax quintic: its error 1 − p reaches its maximum E at four points with
    alternating signs (the equioscillation theorem's certificate), and no nearby coefficients do better."""
    for lo, hi in [(0.003, 1.0), (0.1, 1.8), (0.5, 1.3)]:
        s = torch.linspace(lo, hi, 200_001, dtype=torch.float64)

        def worst(a, b, c, s=s):
            return (1 - (a * s + b * s**3 + c * s**5)).abs().max().item()

        a, b, c = minimax_odd_quintic(lo, hi)
        error = 1 - (a * s + b * s**3 + c * s**5)
        E = error.abs().max().item()
        peaks = error.abs() > E * (1 - 1e-6)
        signs = torch.sign(error[peaks])
        runs = 1 + int((signs.diff() != 0).sum())  # alternations among the points at the maximum
        assert runs == 4, (lo, hi, runs)
        g = torch.Generator().manual_seed(0)
        for _ in range(300):
            da, db, dc = (torch.randn(3, generator=g, dtype=torch.float64) * 1e-3 * abs(a)).tolist()
            assert worst(a + da, b + db, c + dc) >= E * (1 - 1e-9)


def test_newton_schulz_default_table_narrows_the_band():
    """The four quintics of the default table (derived in the next test) composed take every singular value
    in [0.003, 1] into a band around 1, narrower than five of the constant quintic (3.4445, −4.7750, 2.0315)
    manage (checked on a dense grid, outside the derivation)."""

    def composed(coefficients, s):
        for a, b, c in coefficients:
            s = a * s + b * s**3 + c * s**5
        return s

    s = torch.linspace(0.003, 1.0, 1_000_001, dtype=torch.float64)
    ours = composed(NEWTON_SCHULZ_COEFFS, s)
    constant = composed([(3.4445, -4.7750, 2.0315)] * 5, s)
    assert 0.78 < ours.min() and ours.max() < 1.22, (ours.min(), ours.max())
    assert (ours - 1).abs().max() < (constant - 1).abs().max()
    assert constant.min() < 0.7  # the old five-step band, for contrast


def test_newton_schulz_schedules_for_each_step_count():
    """--ns-steps 3, 4, 5: each table is `newton_schulz_schedule(0.003, n)`, and on a dense grid each extra
    iteration narrows the band the composed quintics leave the singular values in."""
    s = torch.linspace(0.003, 1.0, 200_001, dtype=torch.float64)
    widths = []
    for n, table in sorted(NEWTON_SCHULZ_SCHEDULES.items()):
        derived = newton_schulz_schedule(0.003, n)
        assert len(table) == len(derived) == n
        for row, want in zip(derived, table):
            assert row == pytest.approx(want, abs=1e-6)
        x = s
        for a, b, c in table:
            x = a * x + b * x**3 + c * x**5
        widths.append((x - 1).abs().max().item())
    assert widths[0] > widths[1] > widths[2], widths
    assert NEWTON_SCHULZ_COEFFS == NEWTON_SCHULZ_SCHEDULES[4]


def test_muon_matches_torch_muon():
    torch.manual_seed(0)
    W = torch.randn(24, 16)
    ours, theirs = W.clone().requires_grad_(True), W.clone().requires_grad_(True)
    opt_a = Muon([ours], lr=0.02, momentum=0.95, weight_decay=0.01, ns_coefficients=TORCH_MUON_COEFFS)
    opt_b = torch.optim.Muon([theirs], lr=0.02, momentum=0.95, weight_decay=0.01, adjust_lr_fn="original")
    for _ in range(5):
        g = torch.randn(24, 16)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    # both orthogonalise in bf16 with different operation order: compare the total displacement
    ours_step, theirs_step = (ours - W).detach().flatten(), (theirs - W).detach().flatten()
    assert (ours_step - theirs_step).norm() / theirs_step.norm() < 0.05  # bf16 rounding: ~2%
    # and a plain-momentum sanity check: the displacement is not trivially zero
    assert theirs_step.norm() > 0.1


def test_stacked_muon_matches_torch_muon_per_matrix():
    """Matrices of two shapes, stacked per shape in one update: each moves as torch's Muon moves it alone."""
    torch.manual_seed(0)
    shapes = [(24, 16), (16, 40), (24, 16), (16, 40), (24, 16)]
    start = [torch.randn(s) for s in shapes]
    ours = [w.clone().requires_grad_(True) for w in start]
    theirs = [w.clone().requires_grad_(True) for w in start]
    opt = Muon(ours, lr=0.02, momentum=0.9, weight_decay=0.01, ns_coefficients=TORCH_MUON_COEFFS, stack=True)
    references = [
        torch.optim.Muon([w], lr=0.02, momentum=0.9, weight_decay=0.01, adjust_lr_fn="original")
        for w in theirs
    ]
    for _ in range(4):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape)
            b.grad = a.grad.clone()
        opt.step()
        for ref in references:
            ref.step()
    for a, b, w in zip(ours, theirs, start):
        ours_step, theirs_step = (a - w).detach(), (b - w).detach()
        assert (ours_step - theirs_step).norm() / theirs_step.norm() < 0.05  # bf16 Newton–Schulz
    assert len(opt.state) == len(shapes) and all("momentum_buffer" in s for s in opt.state.values())


def test_set_muon_momentum_reaches_muon_only():
    model = GPT(GPTConfig.from_depth(1, vocab_size=20, seq_len=8))
    opt = stage_optimizer(TrainSettings(), model)
    opt.set_muon_momentum(0.87)
    assert {g["name"]: g.get("momentum") for g in opt.param_groups}["matrices"] == 0.87
    assert all("momentum" not in g for g in opt.param_groups if g["name"] != "matrices")


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="training compiles Muon's update on GPUs only")
def test_compiled_muon_equals_eager_muon():
    torch.manual_seed(0)
    start = [torch.randn(32, 16, device="cuda") for _ in range(3)] + [torch.randn(16, 64, device="cuda")]
    runs = []
    for compile in (False, True):
        params = [w.clone().requires_grad_(True) for w in start]
        opt = Muon(params, lr=0.02, momentum=0.95, weight_decay=0.01, compile=compile)  # per matrix / stacked
        g = torch.Generator().manual_seed(1)
        for step in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g).to(p.device)
            opt.param_groups[0]["lr"] = 0.02 * (step + 1)  # a moving rate must not recompile or be ignored
            opt.step()
        runs.append(params)
    for eager, compiled, w in zip(*runs, start):
        # the same updates up to bf16 rounding inside Newton–Schulz (fused differently when compiled)
        assert float((compiled - eager).norm() / (eager - w).norm()) < 0.05  # as against torch.optim.Muon


def test_cpu_training_keeps_muon_eager_and_finite():
    """On a CPU, build_optimizer(compile=True) (what pretraining passes with --compile) leaves Muon's update
    eager: the compiled one wrote NaNs into stacked tall matrices (4 × 1024×256 at depth 4) on a CPU with
    AVX-512 bf16."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, seq_len=16, n_layer=4, n_head=2, n_kv_head=2, n_embd=32))
    rates = dict(embedding_lr=0.2, head_lr=0.004, matrix_lr=0.02, weight_decay=0.0, tokens_per_step=None)
    opt = build_optimizer(model, **rates, compile=True)
    muon = next(o for o in opt.optimizers if isinstance(o, Muon))
    assert muon.update is muon_update and not muon.stack
    x = torch.randint(0, 64, (4, 17))
    for _ in range(2):
        model(x[:, :-1], x[:, 1:]).backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_muon_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(3))], lr=0.02, weight_decay=0.0)


def test_build_optimizer_groups_every_parameter_once():
    model = GPT(GPTConfig.from_depth(2, vocab_size=50, seq_len=16))
    opt = stage_optimizer(TrainSettings(), model)
    seen = [p for g in opt.param_groups for p in g["params"]]
    assert len(seen) == len({id(p) for p in seen}) == len(list(model.parameters()))
    names = {g["name"]: g for g in opt.param_groups}
    assert names["matrices"]["lr"] == 0.02
    assert names["embedding"]["lr"] == pytest.approx(0.2 * (128 / 768) ** -0.5)
    assert width_lr_scale(768) == 1.0 and width_lr_scale(3072) == 0.5


def test_lr_multiplier_updates_every_group_and_state_roundtrips():
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_depth(1, vocab_size=20, seq_len=8))
    opt = stage_optimizer(TrainSettings(), model)
    opt.set_lr_multiplier(0.5)
    assert all(g["lr"] == pytest.approx(0.5 * g["initial_lr"]) for g in opt.param_groups)
    idx = torch.randint(0, 20, (2, 8))
    model(idx, idx).backward()
    opt.step()
    state = copy.deepcopy(opt.state_dict())  # as if read back from a checkpoint file
    clone = GPT(GPTConfig.from_depth(1, vocab_size=20, seq_len=8))
    clone.load_state_dict(model.state_dict())
    opt2 = stage_optimizer(TrainSettings(), clone)
    opt2.load_state_dict(state)
    # the same next step from both gives the same weights
    for m, o in ((model, opt), (clone, opt2)):
        o.zero_grad()
        m(idx, idx).backward()
        o.step()
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError):
        CombinedOptimizer([opt.optimizers[0]]).load_state_dict(state)


def test_wsd_schedule_shape():
    total, warm = 100, 10
    f = [
        lr_multiplier(s, total, schedule="wsd", warmup_steps=warm, warmdown_frac=0.3, final_lr_frac=0.0)
        for s in range(total)
    ]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(x == 1.0 for x in f[10:70])
    assert all(a > b for a, b in zip(f[70:], f[71:]))  # strictly decreasing warmdown
    assert f[99] == pytest.approx(1 - 29 / 30)
    assert (
        lr_multiplier(100, total, schedule="wsd", warmup_steps=0, warmdown_frac=0.3, final_lr_frac=0.0) == 0.0
    )


def test_cosine_schedule_matches_formula():
    total, warm = 50, 5
    for s in range(warm, total):
        expected = 0.1 + 0.45 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
        got = lr_multiplier(
            s, total, schedule="cosine", warmup_steps=warm, warmdown_frac=0.4, final_lr_frac=0.1
        )
        assert got == pytest.approx(expected)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier(0, 10, schedule="linear", warmup_steps=0, warmdown_frac=0.4, final_lr_frac=0.0)


def test_muon_momentum_ramp():
    assert muon_momentum(0) == pytest.approx(0.85)
    assert muon_momentum(150) == pytest.approx(0.90)
    assert muon_momentum(10_000) == pytest.approx(0.95)
