"""The GPT: shapes, causality, attention against the reference formula, KV cache, gradients, learning."""

import math

import pytest
import torch

from picochat import equations as eq
from picochat.model import GPT, GPTConfig


def tiny_config(**overrides):
    cfg = dict(vocab_size=61, seq_len=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)
    cfg.update(overrides)
    return GPTConfig(**cfg)


def randomized(model: GPT, seed=0) -> GPT:
    """The init zeroes output projections; give every weight a random value so all paths matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def test_from_depth_derives_dimensions():
    cfg = GPTConfig.from_depth(4)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_dim) == (4, 256, 4, 64)
    cfg = GPTConfig.from_depth(12, vocab_size=32768)
    assert (cfg.n_embd, cfg.n_head, cfg.vocab_size) == (768, 12, 32768)
    cfg = GPTConfig.from_depth(3, head_dim=128)  # 192 rounds up to 256 = 2 heads of 128
    assert (cfg.n_embd, cfg.n_head) == (256, 2)
    assert GPTConfig.from_depth(4, kv_groups=2).n_kv_head == 2
    with pytest.raises(ValueError):
        GPTConfig(n_embd=30, n_head=4)


def test_parameter_count_matches_formula():
    cfg = tiny_config()
    model = GPT(cfg)
    C, V, L, D = cfg.n_embd, cfg.vocab_size, cfg.n_layer, cfg.head_dim
    attn = C * cfg.n_head * D * 2 + C * cfg.n_kv_head * D * 2
    mlp = 2 * C * 4 * C
    assert model.num_params() == 2 * V * C + L * (attn + mlp)
    assert model.num_params(include_embedding=False) == V * C + L * (attn + mlp)
    assert model.flops_per_token(16) == 6 * (V * C + L * (attn + mlp)) + 6 * L * cfg.n_head * D * 16


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    idx = torch.randint(0, 61, (4, 16))
    loss = model(idx, idx).item()
    assert abs(loss - math.log(61)) < 0.05


def test_causality_future_tokens_do_not_change_past_logits():
    torch.manual_seed(0)
    model = randomized(GPT(tiny_config()))
    idx = torch.randint(0, 61, (2, 20))
    t = 11
    changed = idx.clone()
    changed[:, t + 1 :] = torch.randint(0, 61, (2, 20 - t - 1))
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


def naive_attention(layer, x, cos, sin):
    """The model's attention written with equations.* and explicit head repetition for GQA."""
    attn = layer.self_attn
    B, T, C = x.shape
    q = eq.linear(x, attn.q_proj.weight).view(B, T, attn.n_head, -1)
    k = eq.linear(x, attn.k_proj.weight).view(B, T, attn.n_kv_head, -1)
    v = eq.linear(x, attn.v_proj.weight).view(B, T, attn.n_kv_head, -1)
    q, k = eq.apply_rope(q, cos, sin), eq.apply_rope(k, cos, sin)
    q = q / torch.sqrt(q.pow(2).mean(-1, keepdim=True) + 1e-6)
    k = k / torch.sqrt(k.pow(2).mean(-1, keepdim=True) + 1e-6)
    rep = attn.n_head // attn.n_kv_head
    k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    y = eq.scaled_dot_product_attention(q, k, v, eq.causal_mask(T))
    return eq.linear(y.transpose(1, 2).reshape(B, T, C), attn.o_proj.weight)


def test_attention_equals_naive_formula():
    torch.manual_seed(0)
    model = randomized(GPT(tiny_config()))
    x = torch.randn(2, 9, 32)
    cos, sin = model.rope_cos[None, :9, None], model.rope_sin[None, :9, None]
    layer = model.layers[0]
    torch.testing.assert_close(
        layer.self_attn(x, cos, sin), naive_attention(layer, x, cos, sin), rtol=1e-4, atol=1e-5
    )


def test_kv_cache_decoding_matches_full_forward_batch_one():
    torch.manual_seed(0)
    model = randomized(GPT(tiny_config())).eval()
    idx = torch.randint(0, 61, (1, 14))
    full = model(idx)
    cache = model.make_kv_cache(1, 32)
    steps = [model(idx[:, :6], kv_cache=cache)]  # prefill
    for t in range(6, 14):  # then one token at a time
        steps.append(model(idx[:, t : t + 1], kv_cache=cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)
    assert cache.lengths.tolist() == [14]


def test_kv_cache_rows_with_different_prompt_lengths():
    torch.manual_seed(0)
    model = randomized(GPT(tiny_config())).eval()
    seqs = [torch.randint(0, 61, (n,)) for n in (3, 9, 6)]
    extra = torch.randint(0, 61, (3, 5))  # five decode steps for every row
    cache = model.make_kv_cache(3, 32)
    # prefill each row on its own (batch rows of the cache are independent), then decode together
    for b, s in enumerate(seqs):
        row = model.make_kv_cache(1, 32)
        model(s[None], kv_cache=row)
        cache.k[:, b], cache.v[:, b], cache.lengths[b] = row.k[:, 0], row.v[:, 0], row.lengths[0]
    decoded = [model(extra[:, t : t + 1], kv_cache=cache) for t in range(5)]
    for b, s in enumerate(seqs):
        full = model(torch.cat([s, extra[b]])[None])[0, len(s) :]  # (5, V)
        got = torch.cat([d[b] for d in decoded])
        torch.testing.assert_close(got, full, rtol=1e-4, atol=1e-4)


def test_gradients_match_finite_differences_float64():
    torch.manual_seed(0)
    model = randomized(GPT(tiny_config(n_layer=1, vocab_size=11, n_embd=8, n_head=2, n_kv_head=1))).double()
    idx = torch.randint(0, 11, (1, 5))

    params = [p for p in model.parameters()]

    def loss_of(*flat):
        return torch.func.functional_call(
            model, {n: f for (n, _), f in zip(model.named_parameters(), flat)}, (idx, idx)
        )

    assert torch.autograd.gradcheck(
        loss_of,
        tuple(p.detach().clone().requires_grad_(True) for p in params),
        eps=1e-6,
        atol=1e-5,
        rtol=1e-4,
    )


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    from picochat.optim import build_optimizer

    model = GPT(tiny_config(vocab_size=32, n_embd=64, n_head=4, n_kv_head=4))
    idx = torch.randint(0, 32, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = build_optimizer(
        model,
        embedding_lr=0.3,
        head_lr=0.02,
        matrix_lr=0.04,
        weight_decay=0.0,
        tokens_per_step=None,
        compile=False,
    )
    for _ in range(150):
        loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05, loss.item()


def test_bf16_autocast_forward_keeps_fp32_logits_and_loss():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    idx = torch.randint(0, 61, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(idx)
        loss = model(idx, idx)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert abs(loss.item() - model(idx, idx).item()) < 0.05


def test_logits_at_one_position_per_row_matches_full_logits():
    torch.manual_seed(0)
    model = randomized(GPT(tiny_config())).eval()
    idx = torch.randint(0, 61, (3, 10))
    positions = torch.tensor([9, 4, 0])
    full = model(idx)
    picked = model(idx, logits_at=positions)
    assert picked.shape == (3, 1, 61)
    torch.testing.assert_close(picked[:, 0], full[torch.arange(3), positions])
