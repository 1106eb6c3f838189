"""Each equation of picochat.equations against an independent computation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from derivations import tanh_rational_fit

from picochat import equations as eq

torch.manual_seed(0)


def test_linear_matches_matrix_formula():
    x, W, b = torch.randn(3, 5), torch.randn(4, 5), torch.randn(4)
    expected = torch.stack([W @ xi + b for xi in x])
    torch.testing.assert_close(eq.linear(x, W, b), expected)


def test_dot_and_norms_against_numpy_and_geometry():
    a, b = torch.randn(7, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    assert eq.dot(a, b).item() == pytest.approx(float(np.dot(a.numpy(), b.numpy())))
    assert eq.l2_norm(a).item() == pytest.approx(float(np.linalg.norm(a.numpy())))
    # a·b = |a||b|cos θ, with the angle from an independent formula
    cos_theta = F.cosine_similarity(a, b, dim=0).item()
    assert eq.dot(a, b).item() == pytest.approx(eq.l2_norm(a).item() * eq.l2_norm(b).item() * cos_theta)
    assert eq.dot(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 3.0])).item() == 0.0  # orthogonal
    u = eq.normalize(a)
    assert eq.l2_norm(u).item() == pytest.approx(1.0)
    torch.testing.assert_close(u, F.normalize(a, dim=0))


def test_softmax_sums_to_one_and_matches_torch():
    x = torch.randn(4, 10) * 5
    p = eq.softmax(x)
    torch.testing.assert_close(p.sum(-1), torch.ones(4))
    torch.testing.assert_close(p, torch.softmax(x, -1))
    torch.testing.assert_close(eq.softmax(x, temperature=2.5), torch.softmax(x / 2.5, -1))
    assert (p > 0).all() and (p < 1).all()


def test_softmax_temperature_limits():
    x = torch.tensor([1.0, 3.0, 2.0, -1.0])
    cold = eq.softmax(x, temperature=1e-3)
    assert cold.argmax().item() == 1
    torch.testing.assert_close(cold, F.one_hot(x.argmax(), 4).float())
    hot = eq.softmax(x, temperature=1e6)
    torch.testing.assert_close(hot, torch.full((4,), 0.25), atol=1e-5, rtol=0)
    # overflow-safe: huge logits do not give NaN
    assert torch.isfinite(eq.softmax(torch.tensor([1e4, 1e4 - 1.0]))).all()
    with pytest.raises(ValueError):
        eq.softmax(x, temperature=0)


def test_log_softmax_and_cross_entropy():
    logits = torch.randn(6, 9, dtype=torch.float64)
    torch.testing.assert_close(eq.log_softmax(logits), torch.log(torch.softmax(logits, -1)))
    targets = torch.randint(0, 9, (6,))
    # hand formula: -log p(correct), averaged
    manual = -torch.log(torch.softmax(logits, -1)[torch.arange(6), targets]).mean()
    assert eq.cross_entropy(logits, targets).item() == pytest.approx(manual.item(), rel=1e-6)
    # the document's worked example
    ex = eq.cross_entropy(torch.tensor([[2.0, 1.0, 3.0, 0.5]]), torch.tensor([2]))
    expected = -math.log(math.exp(3.0) / (math.exp(2) + math.exp(1) + math.exp(3) + math.exp(0.5)))
    assert ex.item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_ignores_masked_targets():
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    masked = targets.clone()
    masked[0, :3] = -1
    keep = masked != -1
    per_token = -torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert eq.cross_entropy(logits, masked).item() == pytest.approx(per_token[keep].mean().item(), rel=1e-5)
    assert eq.cross_entropy(logits, masked, reduction="sum").item() == pytest.approx(
        per_token[keep].sum().item(), rel=1e-5
    )
    none = eq.cross_entropy(logits, masked, reduction="none")
    assert none.shape == (2, 5) and (none[~keep] == 0).all()


def test_kl_divergence_properties():
    p = torch.log_softmax(torch.randn(5, 8, dtype=torch.float64), -1)
    q = torch.log_softmax(torch.randn(5, 8, dtype=torch.float64), -1)
    kl_pq, kl_qp = eq.kl_divergence(p, q), eq.kl_divergence(q, p)
    assert (kl_pq > 0).all()
    torch.testing.assert_close(eq.kl_divergence(p, p), torch.zeros(5, dtype=torch.float64))
    assert not torch.allclose(kl_pq, kl_qp)  # asymmetric
    # torch's kl_div(input=log q, target=log p, log_target) computes Σ p (log p − log q)
    ref = F.kl_div(q, p, reduction="none", log_target=True).sum(-1)
    torch.testing.assert_close(kl_pq, ref)


def test_kl_handles_zero_probabilities():
    log_p = torch.log(torch.tensor([0.5, 0.5, 0.0]))
    log_q = torch.log(torch.tensor([0.25, 0.25, 0.5]))
    assert eq.kl_divergence(log_p, log_q).item() == pytest.approx(math.log(2))


def test_entropy_closed_forms():
    assert eq.entropy(torch.full((8,), 1 / 8)).item() == pytest.approx(3.0)  # uniform over 8: 3 bits
    assert eq.entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    p = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    nats = -(p * p.log()).sum().item()
    assert eq.entropy(p, base=math.e).item() == pytest.approx(nats)


def test_perplexity_is_exp_of_nats():
    # uniform over V tokens: loss ln V nats, perplexity V
    V = 50
    logits = torch.zeros(10, V)
    loss = eq.cross_entropy(logits, torch.randint(0, V, (10,)))
    assert eq.perplexity(loss.item()) == pytest.approx(V, rel=1e-5)
    assert eq.perplexity(torch.tensor(math.log(7.0))).item() == pytest.approx(7.0)
    # equals 2 ** (bits)
    assert eq.perplexity(1.3) == pytest.approx(2 ** (1.3 / math.log(2)))


def test_bits_per_byte():
    # a model that spends exactly 8 bits on each byte of an ASCII string: BPB 8
    text = "hello world"
    total_nats = len(text.encode()) * 8 * math.log(2)
    assert eq.bits_per_byte(total_nats, len(text.encode())) == pytest.approx(8.0)
    # counts UTF-8 bytes, not characters: "é" is 2 bytes
    assert eq.bits_per_byte(math.log(2) * 4, len("éé".encode())) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        eq.bits_per_byte(1.0, 0)


def test_activations():
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(eq.relu(x), torch.relu(x))
    torch.testing.assert_close(eq.relu_squared(x), torch.relu(x) ** 2)
    torch.testing.assert_close(eq.gelu(x), F.gelu(x))  # exact (erf) GELU
    torch.testing.assert_close(eq.tanh(x), torch.tanh(x))
    big = torch.tensor([-1000.0, 1000.0])
    torch.testing.assert_close(eq.tanh(big), torch.tensor([-1.0, 1.0]))
    z = torch.randn(20) * 30
    capped = eq.logit_softcap(z, 15.0)
    assert (capped.abs() < 15.0).all()
    torch.testing.assert_close(
        eq.logit_softcap(torch.tensor([0.01]), 15.0), torch.tensor([0.01]), rtol=1e-4, atol=0
    )


def test_tanh_rational_is_tanh_to_fp32_rounding():
    tiny = torch.logspace(-6, -2, 81, dtype=torch.float64)
    x = torch.cat(
        [torch.linspace(-12, 12, 400_001, dtype=torch.float64), tiny, -tiny, torch.tensor([0.0, 1e6])]
    )
    exact = torch.tanh(x)  # float64: exact to far below the errors checked
    assert (eq.tanh_rational(x) - exact).abs().max() < 2e-8  # the fit's own error
    x32 = x.float()
    in_fp32, exact = eq.tanh_rational(x32).double(), torch.tanh(x32.double())  # of the same fp32 inputs
    assert (in_fp32 - exact).abs().max() < 4e-7  # a few fp32 steps (one step below 1 is 6e-8)
    assert (in_fp32.abs() <= 1).all()
    small = (x.abs() >= 1e-6) & (x.abs() <= 1e-2)  # near 0 the error is relative: tanh x ≈ x
    assert ((in_fp32 - exact)[small] / exact[small]).abs().max() < 3e-7
    ends = eq.tanh_rational(torch.tensor([float("-inf"), float("inf"), float("nan")]))
    torch.testing.assert_close(ends[:2], torch.tensor([-1.0, 1.0]), rtol=0, atol=1e-7)
    assert ends[2].isnan()


def test_tanh_rational_table_is_the_fit():
    P, Q = tanh_rational_fit()
    torch.testing.assert_close(P, torch.tensor(eq.TANH_P, dtype=torch.float64), rtol=1e-6, atol=0)
    torch.testing.assert_close(Q, torch.tensor(eq.TANH_Q, dtype=torch.float64), rtol=1e-6, atol=0)
    x = torch.linspace(0, eq.TANH_BOUND, 100_001, dtype=torch.float64)

    def worst(P, Q):
        return (eq.tanh_rational(x, P.tolist(), Q.tolist()) - torch.tanh(x)).abs().max()

    # the reweighting matters: plain least squares (one round) leaves an error several times larger
    assert worst(*tanh_rational_fit(rounds=1)) > 3 * worst(P, Q)


def test_logit_softcap_compiled_on_cpu_matches_the_formula_and_its_gradient():
    torch.manual_seed(0)
    z = (torch.randn(6, 50) * 20).requires_grad_()
    compiled = torch.compile(lambda z: eq.logit_softcap(z, 15.0), fullgraph=True)
    out = compiled(z)
    out.backward(torch.ones_like(out))
    grad = z.grad.clone()
    z.grad = None
    reference = 15.0 * torch.tanh(z.double() / 15.0)  # and its derivative by autograd, in float64
    reference.backward(torch.ones_like(reference))
    torch.testing.assert_close(out.double(), reference, rtol=0, atol=15 * 4e-7)
    torch.testing.assert_close(grad.double(), z.grad.double(), rtol=0, atol=1e-6)


def test_gradient_descent_step_decreases_a_quadratic():
    theta = torch.tensor([3.0, -2.0])
    for _ in range(50):
        theta = eq.gradient_descent_step(theta, 2 * theta, lr=0.1)  # ∇(θ²) = 2θ
    assert theta.abs().max() < 1e-4


def test_layer_norm_and_rms_norm():
    x = torch.randn(4, 16, dtype=torch.float64)
    g, b = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    torch.testing.assert_close(eq.layer_norm(x, g, b), F.layer_norm(x, (16,), g, b, eps=1e-5))
    manual = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(eq.rms_norm(x), manual)
    # RMS of the output is 1
    torch.testing.assert_close(
        eq.rms_norm(x).pow(2).mean(-1), torch.ones(4, dtype=torch.float64), rtol=1e-4, atol=0
    )


def test_causal_mask_blocks_the_future():
    m = eq.causal_mask(4)
    for i in range(4):
        for j in range(4):
            assert (m[i, j] == 0) == (j <= i)
            assert (m[i, j] == float("-inf")) == (j > i)
    # with two cached tokens, query 0 sits at position 2 and sees keys 0..2
    m = eq.causal_mask(2, 4)
    assert m[0].tolist()[:3] == [0.0, 0.0, 0.0] and m[0, 3] == float("-inf")
    assert (m[1] == 0).all()


def test_attention_matches_loops_and_torch():
    q, k, v = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 3)
    out = eq.scaled_dot_product_attention(q, k, v, eq.causal_mask(5))
    # naive loops over each query
    for b in range(2):
        for i in range(5):
            scores = torch.tensor([q[b, i] @ k[b, j] / math.sqrt(8) for j in range(i + 1)])
            w = torch.exp(scores - scores.max())
            w = w / w.sum()
            expected = sum(w[j] * v[b, j] for j in range(i + 1))
            torch.testing.assert_close(out[b, i], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-5, atol=1e-6
    )


def test_compiled_attention_survives_head_counts_made_symbolic():
    """A second shape of the same code makes dynamo treat the head counts as symbols: enable_gqa stays a bool."""
    torch._dynamo.reset()
    compiled = torch.compile(eq.attention, fullgraph=True, backend="eager")
    for heads, groups in [(4, 2), (6, 3), (8, 8)]:
        q, k, v = torch.randn(2, heads, 3, 8), torch.randn(2, groups, 3, 8), torch.randn(2, groups, 3, 8)
        torch.testing.assert_close(compiled(q, k, v, causal=True), eq.attention(q, k, v, causal=True))
    torch._dynamo.reset()


def test_multi_head_attention_matches_torch_module():
    C, H, T = 12, 3, 6
    mha = torch.nn.MultiheadAttention(C, H, bias=False, batch_first=True)
    x = torch.randn(2, T, C)
    w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3)
    ref, _ = mha(x, x, x, attn_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), 1), need_weights=False)
    ours = eq.multi_head_attention(x, w_q, w_k, w_v, mha.out_proj.weight.detach(), H, causal=True)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-4, atol=1e-5)


def test_sinusoidal_positions():
    pe = eq.sinusoidal_positions(10, 6)
    pos, i = 7, 1
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 6)), abs=1e-6)
    assert pe[0, 0] == 0 and pe[0, 1] == 1


def rope_at(x, position, D):
    cos, sin = eq.rope_angles(position + 1, D)
    return eq.apply_rope(x, cos[position], sin[position])


def test_rope_keeps_norms_and_depends_on_relative_position():
    D = 16
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    q, k = q.float(), k.float()
    for m in (0, 3, 11):
        assert eq.l2_norm(rope_at(q, m, D)).item() == pytest.approx(eq.l2_norm(q).item(), rel=1e-5)
    # shift both positions by the same amount: the score does not change
    base = eq.dot(rope_at(q, 7, D), rope_at(k, 4, D)).item()
    for shift in (1, 5, 20):
        assert eq.dot(rope_at(q, 7 + shift, D), rope_at(k, 4 + shift, D)).item() == pytest.approx(
            base, rel=1e-4
        )
    # but a different offset does
    assert eq.dot(rope_at(q, 8, D), rope_at(k, 4, D)).item() != pytest.approx(base, rel=1e-3)


def test_rope_matches_2d_rotation_matrix():
    # each pair (x_i, x_{i+D/2}) is multiplied by R(−θ) = [[cos, sin], [−sin, cos]]
    D, m = 8, 5
    x = torch.randn(D)
    out = rope_at(x, m, D)
    for i in range(D // 2):
        theta = m * 10000 ** (-2 * i / D)
        R = torch.tensor([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
        expected = R @ torch.stack([x[i], x[i + D // 2]])
        torch.testing.assert_close(torch.stack([out[i], out[i + D // 2]]), expected, rtol=1e-5, atol=1e-5)


def test_momentum_step_is_an_ema():
    theta, v = torch.zeros(3), torch.zeros(3)
    g = torch.tensor([1.0, 2.0, 3.0])
    for _ in range(200):
        theta, v = eq.momentum_step(theta, v, g, lr=0.0, beta=0.9)
    torch.testing.assert_close(v, g)  # a constant gradient's EMA converges to it
    theta, v = eq.momentum_step(torch.zeros(3), torch.zeros(3), g, lr=0.5, beta=0.9)
    torch.testing.assert_close(theta, -0.5 * 0.1 * g)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch_step_for_step(weight_decay):
    torch.manual_seed(1)
    p = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    ref = p.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([ref], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    theta, m, v = p.detach().clone(), torch.zeros_like(p), torch.zeros_like(p)
    for step in range(1, 8):
        grad = torch.randn(5, 4, dtype=torch.float64)
        ref.grad = grad.clone()
        opt.step()
        theta, m, v = eq.adamw_step(theta, m, v, grad, step, 0.01, 0.9, 0.95, 1e-8, weight_decay)
        torch.testing.assert_close(theta, ref.detach(), rtol=1e-12, atol=1e-12)


def test_linear_warmup_and_cosine_decay():
    assert eq.linear_warmup(0, 10, 1.0) == 0.0
    assert eq.linear_warmup(5, 10, 2.0) == pytest.approx(1.0)
    assert eq.linear_warmup(50, 10, 2.0) == 2.0
    assert eq.cosine_decay(0, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert eq.cosine_decay(50, 100, 1.0, 0.1) == pytest.approx(0.55)
    assert eq.cosine_decay(100, 100, 1.0, 0.1) == pytest.approx(0.1)
    # agrees with torch's CosineAnnealingLR closed form
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.05)
    for t in range(1, 21):
        opt.step()
        sched.step()
        assert eq.cosine_decay(t, 20, 1.0, 0.05) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-9)
