"""The GPT: a decoder-only Transformer, readable top to bottom in the order data flows through it.

    tokens ─ embed ─ RMSNorm ─┬─ N × Block ─ RMSNorm ─ LM head ─ soft-cap ─ logits
                              │   Block: x + Attention(RMSNorm(x)), then x + MLP(RMSNorm(x))

- RMSNorm without parameters (`equations.rms_norm`), before each sub-layer and after the embedding.
- Attention: grouped-query heads (n_kv_head divides n_head), rotary positions (`equations.apply_rope`),
  then QK-norm (RMSNorm of each query and key head, after RoPE), causal, no biases anywhere.
- MLP: 4× width with ReLU² (`equations.relu_squared`).
- Untied LM head; logits soft-capped to ±softcap (`equations.logit_softcap`) and returned in fp32.
- Per-token options, all off by default (GPTConfig: value_embeds, resid_scalars, smear, backout): the
  default model is transformers' `nanochat` architecture; each option is a few lines below (docs/model.md).

Parameter names follow Hugging Face's `NanoChatForCausalLM`, so `picochat export` writes weights that load
there unchanged: embed_tokens, layers.{i}.self_attn.{q,k,v,o}_proj, layers.{i}.mlp.{fc1,fc2}, lm_head.

Shapes: B batch, T time, C channels (n_embd), H query heads, G key/value heads, D head size, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from picochat.equations import (
    apply_rope,
    at_least_fp32,
    attention,
    cross_entropy,
    in_textbook_mode,
    logit_softcap,
    relu_squared,
    rms_norm,
    rope_angles,
    textbook_mode,
)

MODEL_OPTIONS = ("value_embeds", "resid_scalars", "smear", "backout")
# the value-embedding and smear gates read the first channels of their input: a cheap per-token signal
GATE_CHANNELS = 16


@dataclass
class GPTConfig:
    vocab_size: int = 8192
    seq_len: int = 512  # the training context; RoPE tables cover `rope_len` positions for generation
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4  # < n_head for grouped-query attention
    n_embd: int = 256
    mlp_ratio: int = 4
    softcap: float = 15.0
    rope_base: float = 10000.0
    norm_eps: float = 1e-6
    # options beyond transformers' `nanochat` architecture (`picochat export` refuses them): each starts as
    # the identity, or nearly, and learns away from it
    value_embeds: bool = False  # a per-layer table of the input tokens, gated into the attention values
    resid_scalars: bool = False  # x = λ_resid·x + λ_x0·x0 before each block (x0: the embedding)
    smear: bool = False  # the previous token's embedding mixed into each position by a learned gate
    backout: bool = False  # a learned share of the middle residual subtracted before the final norm

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")
        if (self.n_embd // self.n_head) % 2:
            raise ValueError(f"head size {self.n_embd // self.n_head} must be even for RoPE")
        if (self.value_embeds or self.smear) and self.n_embd < GATE_CHANNELS:
            raise ValueError(f"value_embeds and smear gate on {GATE_CHANNELS} channels; n_embd={self.n_embd}")

    @property
    def options(self) -> list[str]:
        """The per-token options switched on, by name."""
        return [name for name in MODEL_OPTIONS if getattr(self, name)]

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def rope_len(self) -> int:
        return max(4 * self.seq_len, 2048)

    @classmethod
    def from_depth(
        cls, depth, vocab_size=8192, seq_len=512, aspect_ratio=64, head_dim=64, kv_groups=1, **options
    ):
        """One dial: width = aspect_ratio × depth, rounded up to whole heads of `head_dim` (depth 12 → 768
        wide, 12 heads). `kv_groups` query heads share each key/value head (1 = plain multi-head);
        `options`: the per-token options by name (value_embeds=True, ...)."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        n_embd = math.ceil(aspect_ratio * depth / head_dim) * head_dim
        n_head = n_embd // head_dim
        if n_head % kv_groups:
            raise ValueError(f"{n_head} heads cannot be split into groups of {kv_groups}")
        kv_head = n_head // kv_groups
        return cls(
            vocab_size, seq_len, n_layer=depth, n_head=n_head, n_kv_head=kv_head, n_embd=n_embd, **options
        )

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    """Grouped-query causal self-attention with RoPE and QK-norm."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx, self.eps = layer_idx, config.norm_eps
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_proj = nn.Linear(config.n_embd, config.n_head * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.n_embd, config.n_kv_head * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.n_head * config.head_dim, config.n_embd, bias=False)
        # --value-embeds: one gate per key/value head, read from the block's input
        has_table = str(layer_idx) in value_embed_layers(config)
        self.ve_gate = nn.Linear(GATE_CHANNELS, config.n_kv_head, bias=False) if has_table else None

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, kv_cache: KVCache | None = None, ve=None
    ) -> Tensor:
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim)  # (B, T, H, D)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, G, D)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)  # (B, T, G, D)
        if ve is not None:  # ve (B, T, G·D): this layer's value embedding of the input tokens
            v = value_mix(v, ve.view_as(v), self.ve_gate(x[..., :GATE_CHANNELS]))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k = rms_norm(q, self.eps), rms_norm(k, self.eps)  # QK-norm, after RoPE
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H|G, T, D)
        # softmax(q kᵀ / √D + causal mask) v (equations.attention: fused, or the formula in textbook mode)
        if kv_cache is None:
            y = attention(q, k, v, causal=True)
        else:
            k, v, visible = kv_cache.store(self.layer_idx, k, v)  # (B, G, S, D), (B, 1, T, S)
            y = attention(q, k.to(q.dtype), v.to(q.dtype), visible)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    """Position-wise feed-forward: fc2(ReLU²(fc1(x)))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, config.mlp_ratio * config.n_embd, bias=False)
        self.fc2 = nn.Linear(config.mlp_ratio * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(relu_squared(self.fc1(x)))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm residual block: x + Attention(RMSNorm(x)), then x + MLP(RMSNorm(x))."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.eps = config.norm_eps
        self.self_attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, kv_cache: KVCache | None = None, ve=None
    ) -> Tensor:
        x = x + self.self_attn(rms_norm(x, self.eps), cos, sin, kv_cache, ve)
        return x + self.mlp(rms_norm(x, self.eps))


class GPT(nn.Module):
    """The whole model: token embedding, `n_layer` blocks, a final norm and the LM head."""

    def __init__(self, config: GPTConfig, textbook: bool = False):
        super().__init__()
        self.config = config
        self.textbook = textbook  # True: every equation through its plain function (equations.textbook_mode)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.n_embd)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.add_options(config)
        cos, sin = rope_angles(config.rope_len, config.head_dim, config.rope_base)  # (rope_len, D/2)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.init_weights()

    def add_options(self, config: GPTConfig) -> None:
        """The per-token options' parameters (None when off: the default state_dict is the plain model's)."""
        kv_width, L = config.n_kv_head * config.head_dim, config.n_layer
        layers = value_embed_layers(config)
        tables = {i: nn.Embedding(config.vocab_size, kv_width) for i in layers}
        self.value_embeds = nn.ModuleDict(tables) if config.value_embeds else None
        self.resid_lambdas = nn.Parameter(torch.ones(L)) if config.resid_scalars else None  # (L,)
        self.x0_lambdas = nn.Parameter(torch.zeros(L)) if config.resid_scalars else None  # (L,)
        self.smear_gate = nn.Linear(GATE_CHANNELS, 1, bias=False) if config.smear else None
        self.smear_lambda = nn.Parameter(torch.zeros(1)) if config.smear else None
        self.backout_lambda = nn.Parameter(torch.zeros(1)) if config.backout else None

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialisation (docs/model.md): embedding ~ N(0, 1) (RMS-normalised at once); q, k, v, fc1 ~
        U(−a, a) with a = √3 / √C (std 1/√C); o_proj, fc2 = 0 (blocks start as the identity); lm_head ~
        N(0, 0.001²) (loss ≈ ln V at step 0); the options' tables as v_proj, their scalars neutral."""
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        bound = math.sqrt(3.0) / math.sqrt(self.config.n_embd)  # C
        for block in self.layers:
            attn = block.self_attn
            for linear in (attn.q_proj, attn.k_proj, attn.v_proj, block.mlp.fc1):
                nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(attn.o_proj.weight)
            nn.init.zeros_(block.mlp.fc2.weight)
            if attn.ve_gate is not None:
                nn.init.zeros_(attn.ve_gate.weight)  # gate 2σ(0) = 1
        for table in self.value_embeds.values() if self.value_embeds is not None else ():
            nn.init.uniform_(table.weight, -bound, bound)  # as v_proj's weights: small next to v at first
        for name in ("resid_lambdas", "x0_lambdas", "smear_lambda", "backout_lambda", "smear_gate"):
            if (p := getattr(self, name)) is not None:  # neutral: λ_resid 1, every other scalar and gate 0
                nn.init.constant_(p if isinstance(p, Tensor) else p.weight, float(name == "resid_lambdas"))
        cfg = self.config
        cos, sin = rope_angles(cfg.rope_len, cfg.head_dim, cfg.rope_base, device=self.rope_cos.device)
        self.rope_cos.copy_(cos)
        self.rope_sin.copy_(sin)

    def forward(
        self, idx: Tensor, targets=None, kv_cache=None, loss_reduction="mean", logits_at=None
    ) -> Tensor:
        """idx (B, T) token ids. Returns fp32 logits (B, T, V), or the loss given targets (B, T) (-1 masked;
        `loss_reduction` as in `equations.cross_entropy`). `logits_at` (B,): one position per row, (B, 1, V),
        as a prefill needs. With a `kv_cache`, the tokens continue each row from its cached length."""
        if self.textbook and not in_textbook_mode():  # the same forward, every equation written out
            with textbook_mode():
                return self.forward(idx, targets, kv_cache, loss_reduction, logits_at)
        B, T = idx.shape
        if kv_cache is None:
            if T > self.config.rope_len:
                raise ValueError(f"sequence of {T} tokens exceeds the RoPE table of {self.config.rope_len}")
            cos, sin = self.rope_cos[None, :T, None, :], self.rope_sin[None, :T, None, :]  # (1, T, 1, D/2)
        else:
            pos = kv_cache.positions(T)  # (B, T)
            cos, sin = self.rope_cos[pos].unsqueeze(2), self.rope_sin[pos].unsqueeze(2)  # (B, T, 1, D/2)

        x = self.embed(idx, kv_cache)  # (B, T, C)
        x0, x_mid = x, None
        for i, block in enumerate(self.layers):
            if self.resid_lambdas is not None:  # --resid-scalars
                x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            table = self.value_embeds[str(i)] if str(i) in (self.value_embeds or {}) else None
            x = block(x, cos, sin, kv_cache, None if table is None else table(idx))  # ve: (B, T, G·D)
            x_mid = x if i == (self.config.n_layer - 1) // 2 else x_mid
        if self.backout_lambda is not None:  # --backout: x − λ·x_mid, the middle block's output
            x = x - self.backout_lambda * x_mid
        x = rms_norm(x, self.config.norm_eps)
        if kv_cache is not None:
            kv_cache.advance(T)
        if logits_at is not None:
            x = x[torch.arange(B, device=x.device), logits_at].unsqueeze(1)  # (B, 1, C)

        logits = self.lm_head(x)
        logits = logit_softcap(logits.to(at_least_fp32(logits.dtype)), self.config.softcap)  # (B, T, V), fp32
        if targets is None:
            return logits
        return cross_entropy(logits, targets, ignore_index=-1, reduction=loss_reduction)

    def embed(self, idx: Tensor, kv_cache: KVCache | None) -> Tensor:
        """The RMS-normalised token embedding (B, T, C); with --smear, the previous token's mixed in."""
        x = rms_norm(self.embed_tokens(idx), self.config.norm_eps)  # (B, T, C)
        if self.smear_gate is None:
            return x
        if kv_cache is None:
            x_prev = F.pad(x[:, :-1], (0, 0, 1, 0))  # (B, T, C): zeros before the first token
        else:  # the token before a chunk came in an earlier call: the cache keeps each row's tokens
            prev, has_prev = kv_cache.previous_tokens(idx)  # (B, T), (B, T)
            x_prev = rms_norm(self.embed_tokens(prev), self.config.norm_eps) * has_prev.unsqueeze(-1)
        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[..., :GATE_CHANNELS]))  # (B, T, 1)
        return smear(x, x_prev, gate)

    def num_params(self, include_embedding: bool = True) -> int:
        """Parameter count; embeddings are lookups, so they are excluded from FLOP estimates."""
        n = sum(p.numel() for p in self.parameters())
        tables = [self.embed_tokens, *(self.value_embeds.values() if self.value_embeds is not None else ())]
        return n if include_embedding else n - sum(t.weight.numel() for t in tables)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6·N + 6·L·H·D·T. N: the matmul weights (2 FLOPs
        each forward, 4 backward); attention: 2·2·H·D·T per layer forward, halved by causality, ×3 in all."""
        cfg, T = self.config, seq_len or self.config.seq_len
        return (
            6.0 * self.num_params(include_embedding=False) + 6.0 * cfg.n_layer * cfg.n_head * cfg.head_dim * T
        )

    def make_kv_cache(self, batch_size: int, max_len: int, dtype=None) -> KVCache:
        weight = self.lm_head.weight
        return KVCache(self.config, batch_size, max_len, device=weight.device, dtype=dtype or weight.dtype)


def value_embed_layers(config: GPTConfig) -> list[str]:
    """The layers (as ModuleDict keys) with a value embedding: every other one, ending at the last. Each
    table is as large as the token embedding and its AdamW update runs every step, so half the layers get
    one; the last layer is nearest the output, where a token's own identity is most directly useful."""
    if not config.value_embeds:
        return []
    return [str(i) for i in range(config.n_layer) if (config.n_layer - 1 - i) % 2 == 0]


def value_mix(v: Tensor, ve: Tensor, gate_logits: Tensor) -> Tensor:
    """Value embedding: v' = v + 2σ(g) ⊙ ve, g (B, T, G) one gate per key/value head (2σ(0) = 1 at init);
    v, ve (B, T, G, D). The values carry the token's identity however much the residual has mixed it."""
    return v + (2 * torch.sigmoid(gate_logits)).unsqueeze(-1) * ve.to(v.dtype)


def smear(x: Tensor, x_prev: Tensor, gate: Tensor) -> Tensor:
    """Smear: x'_t = x_t + g_t · x_{t−1}, g_t = λ·σ(w · x_t[:16]) (B, T, 1); causal, a cheap bigram signal."""
    return x + gate * x_prev


class KVCache:
    """Keys and values of every layer for B rows; row b's next token sits at position `lengths[b]`, and its
    queries see only its own first `lengths[b] + t + 1` keys."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        if max_len > config.rope_len:
            raise ValueError(f"max_len {max_len} exceeds the model's RoPE table of {config.rope_len}")
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, G, S, D)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.max_len = max_len
        # --smear: each row's tokens (B, S), so a decode step finds the one before it
        self.tokens = (
            torch.zeros(batch_size, max_len, dtype=torch.long, device=device) if config.smear else None
        )

    def positions(self, T: int) -> Tensor:
        return self.lengths.unsqueeze(1) + torch.arange(T, device=self.lengths.device)

    def store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Write T new keys/values (B, G, T, D); return all cached (B, G, S, D) and the mask (B, 1, T, S)."""
        pos = self.positions(k.size(2))  # (B, T)
        S = int(pos.max()) + 1
        if S > self.max_len:
            raise ValueError(f"KV cache is full: {self.max_len} positions")
        return self.write(layer, k, v, pos, S)

    def write(self, layer: int, k: Tensor, v: Tensor, pos: Tensor, S: int) -> tuple[Tensor, Tensor, Tensor]:
        """`store` at the positions `pos` (B, T), attending over the first S positions."""
        rows = torch.arange(pos.size(0), device=pos.device).unsqueeze(1)  # (B, 1)
        # cache[b, :, pos[b, t]] = k[b, :, t]: an index_put, which a compiler updates in place
        self.k[layer][rows, :, pos] = k.transpose(1, 2).to(self.k[layer].dtype)  # (B, T, G, D)
        self.v[layer][rows, :, pos] = v.transpose(1, 2).to(self.v[layer].dtype)
        visible = torch.arange(S, device=pos.device)[None, None, :] <= pos[:, :, None]  # (B, T, S)
        return self.k[layer][:, :, :S], self.v[layer][:, :, :S], visible.unsqueeze(1)

    def previous_tokens(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Keep the T new tokens (B, T) of each row; return the token before each (B, T), and whether there
        is one (B, T)."""
        if self.tokens is None:
            raise ValueError("this KV cache keeps no tokens: make it with the model (GPT.make_kv_cache)")
        pos = self.positions(idx.size(1))  # (B, T)
        rows = torch.arange(pos.size(0), device=pos.device).unsqueeze(1)  # (B, 1)
        self.tokens[rows, pos] = idx
        return self.tokens[rows, (pos - 1).clamp(min=0)], pos > 0

    def advance(self, T: int) -> None:
        self.lengths += T

    def set_lengths(self, lengths: Tensor) -> None:
        """Declare how many positions of each row are real (after a right-padded prefill)."""
        self.lengths.copy_(lengths)

    def keep_rows(self, index: Tensor) -> None:
        """Drop every row not in `index` (finished generations), keeping the order of `index`."""
        self.k, self.v = self.k.index_select(1, index), self.v.index_select(1, index)
        self.lengths = self.lengths[index]
        if self.tokens is not None:
            self.tokens = self.tokens[index]
