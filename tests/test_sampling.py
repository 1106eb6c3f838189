"""The batched sampler: Gumbel-max over counter-based hashed uniforms draws tokens with the probabilities
asked for, reproducibly, each row from its own stream."""

import torch

from picochat.engine import hash32, row_seed, sample


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
