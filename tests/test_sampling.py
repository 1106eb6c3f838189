"""The batched sampler: Gumbel-max over counter-based hashed uniforms draws tokens with the probabilities
asked for, reproducibly, each row from its own stream; `pick_tokens` falls back to the argmax where the
probabilities are not finite, and picks the same per row whether settings are shared or per row."""

import pytest
import torch

from picochat.engine import SamplingParams, hash32, pick_tokens, row_seed, sample, sampling_probs


def as_int64(seed: int) -> int:
    return seed - 2**64 if seed >= 2**63 else seed


def test_frequencies_match_the_probabilities():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    n = 20_000
    seeds = torch.full((n,), as_int64(row_seed(7, 0)))
    draws = torch.arange(n)  # one row's stream, draw after draw
    tokens = sample(probs.expand(n, -1), seeds, draws)
    freq = torch.bincount(tokens, minlength=5).float() / n
    # binomial standard error at n = 20 000 is at most 0.0035; 4 of them
    assert torch.allclose(freq, probs, atol=0.014), freq
    assert freq[4] == 0  # a filtered-out token is never drawn


def test_streams_are_reproducible_and_independent():
    probs = torch.softmax(torch.randn(3, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    seeds = torch.tensor([as_int64(row_seed(1, b)) for b in range(3)])
    first = [sample(probs, seeds, torch.full((3,), t)) for t in range(40)]
    again = [sample(probs, seeds, torch.full((3,), t)) for t in range(40)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    # a row's draw depends on its own seed and draw count only, not on the rows beside it
    alone = [sample(probs[1:2], seeds[1:2], torch.full((1,), t)) for t in range(40)]
    assert [int(a) for a in alone] == [int(f[1]) for f in first]
    # the same distribution in every row, different seeds: the rows do not repeat each other
    same = probs[:1].expand(3, -1)
    rows = torch.stack([sample(same, seeds, torch.full((3,), t)) for t in range(40)], dim=1)  # (3, 40)
    assert not torch.equal(rows[0], rows[1]) and not torch.equal(rows[1], rows[2])


def test_hash32_matches_the_reference_integer_code():
    def lowbias32(x: int) -> int:  # the published algorithm in plain Python integers
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    xs = [0, 1, 2, 12345, 2**31 - 1, 2**32 - 1, 0xDEADBEEF]
    assert hash32(torch.tensor(xs)).tolist() == [lowbias32(x) for x in xs]


INF, NAN = float("inf"), float("nan")


def test_pick_tokens_takes_the_argmax_where_probabilities_are_not_finite():
    logits = torch.tensor(
        [
            [0.0, 1.0, 3.0, 2.0],  # finite: a draw
            [0.0, INF, 1.0, 2.0],  # an infinite logit: softmax gives inf - inf = NaN
            [0.0, NAN, 1.0, 2.0],  # NaN (a diverged model): the argmax counts it as the largest
            [-1.0, 3.0, 1.0, 2.0],  # finite; at a tiny temperature logits / T overflow
        ]
    )
    seeds, draws = (
        torch.tensor([as_int64(row_seed(9, b)) for b in range(4)]),
        torch.zeros(4, dtype=torch.long),
    )
    picks = pick_tokens(logits, SamplingParams(temperature=1.0), seeds, draws)
    finite = [0, 3]  # rows drawn as `sample` draws them
    drawn = sample(
        sampling_probs(logits[finite], SamplingParams(temperature=1.0)), seeds[finite], draws[finite]
    )
    assert picks.tolist() == [int(drawn[0]), 1, 1, int(drawn[1])]
    assert not torch.isfinite(sampling_probs(logits[3:], SamplingParams(temperature=1e-40))).all()
    assert pick_tokens(logits[3:], SamplingParams(temperature=1e-40), seeds[3:], draws[3:]).tolist() == [1]


@pytest.mark.parametrize("temperature", [0.7, 1e-40])
def test_pick_tokens_per_row_settings_pick_what_shared_settings_pick(temperature):
    """The server gives each row its own settings; a row's pick is the one it gets in a batch that shares
    them (the engine's), and a greedy row beside it keeps its argmax."""
    logits = torch.randn(5, 40, generator=torch.Generator().manual_seed(3)) * 4
    seeds = torch.tensor([as_int64(row_seed(4, b)) for b in range(5)])
    draws = torch.arange(5) * 3
    shared = SamplingParams(temperature=temperature, top_k=10, top_p=0.9, min_p=0.02)
    batched = pick_tokens(logits, shared, seeds, draws)
    per_row = pick_tokens(logits, [shared, SamplingParams(temperature=0)] * 2 + [shared], seeds, draws)
    expected = batched.clone()
    expected[[1, 3]] = logits[[1, 3]].argmax(dim=-1)
    assert torch.equal(per_row, expected)
