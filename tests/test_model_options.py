"""The model's per-token options (value embeddings, residual scalars, smear, backout): off, the model is the
plain one; on, each changes the logits, trains, and decodes with a KV cache exactly as the full forward
computes; `picochat export` refuses them. Then the optimizer's flags: --optimizer adamw and Muon's settings."""

from __future__ import annotations

import json

import pytest
import test_pretrain
import torch

from picochat.checkpoint import latest_checkpoint, load_model
from picochat.cli import main
from picochat.decode import DecodeSlots
from picochat.model import GPT, MODEL_OPTIONS, GPTConfig
from picochat.optim import NEWTON_SCHULZ_SCHEDULES, Muon
from picochat.settings import TrainSettings
from picochat.training import stage_optimizer

V = 61
corpus_and_tokenizer = test_pretrain.corpus_and_tokenizer  # a fixture: a tiny corpus and its tokenizer


def config(*options: str) -> GPTConfig:
    return GPTConfig(
        vocab_size=V, seq_len=32, n_layer=3, n_head=4, n_kv_head=2, n_embd=32, **dict.fromkeys(options, True)
    )


def pair(*options: str, seed: int = 0) -> tuple[GPT, GPT]:
    """(plain, with options): the same random weights where they share names, the options' own random."""
    g = torch.Generator().manual_seed(seed)
    plain, optioned = GPT(config()), GPT(config(*options))
    with torch.no_grad():
        for p in optioned.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    plain.load_state_dict({k: v for k, v in optioned.state_dict().items() if k in plain.state_dict()})
    return plain.eval(), optioned.eval()


def neutral(model: GPT) -> GPT:
    """The options set to what makes each the identity: λ_resid 1, λ_x0 0, smear 0, backout 0, tables 0."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "resid_lambdas":
                p.fill_(1.0)
            elif name in ("x0_lambdas", "smear_lambda", "backout_lambda") or name.startswith("value_embeds."):
                p.zero_()
    return model


def test_default_model_has_exactly_the_plain_parameters_and_optimizer_groups():
    model = GPT(config())
    per_layer = [f"self_attn.{n}_proj.weight" for n in "qkvo"] + ["mlp.fc1.weight", "mlp.fc2.weight"]
    expected = [
        "embed_tokens.weight",
        *(f"layers.{i}.{n}" for i in range(3) for n in per_layer),
        "lm_head.weight",
    ]
    assert list(model.state_dict()) == expected
    assert config().options == [] and GPTConfig(**config().to_dict()) == config()
    opt = stage_optimizer(TrainSettings(), model)
    assert [g["name"] for g in opt.param_groups] == ["embedding", "lm_head", "matrices"]


@pytest.mark.parametrize("option", MODEL_OPTIONS)
def test_each_option_changes_the_logits_and_its_neutral_values_give_the_plain_model(option):
    plain, optioned = pair(option)
    idx = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(optioned(idx), plain(idx), atol=1e-3)
    torch.testing.assert_close(neutral(optioned)(idx), plain(idx), rtol=1e-5, atol=1e-5)


def test_every_option_trains_in_its_optimizer_group():
    torch.manual_seed(0)
    model = GPT(config(*MODEL_OPTIONS))
    opt = stage_optimizer(TrainSettings(), model)
    grouped = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each exactly once
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["name"]: [names[id(p)] for p in g["params"]] for g in opt.param_groups}
    assert groups["value_embeds"] == ["value_embeds.0.weight", "value_embeds.2.weight"]  # every other layer
    assert set(groups["scalars"]) == {
        "resid_lambdas", "x0_lambdas", "smear_gate.weight", "smear_lambda", "backout_lambda",
        "layers.0.self_attn.ve_gate.weight", "layers.2.self_attn.ve_gate.weight",
    }  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    idx = torch.randint(0, V, (4, 17), generator=torch.Generator().manual_seed(2))
    losses = []
    for _ in range(6):
        loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.5, losses
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []


@pytest.mark.parametrize(
    "options", [(o,) for o in MODEL_OPTIONS] + [MODEL_OPTIONS], ids=[*MODEL_OPTIONS, "all"]
)
def test_kv_cache_decoding_equals_the_full_forward(options):
    _, model = pair(*options)
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(0, V, (n,), generator=g) for n in (13, 9)]
    with torch.no_grad():
        # the plain cache: a prefill, then one token at a time, then one row dropped
        cache = model.make_kv_cache(2, 32)
        steps = [model(torch.stack([s[:5] for s in seqs]), kv_cache=cache)]
        steps += [model(torch.stack([s[t : t + 1] for s in seqs]), kv_cache=cache) for t in range(5, 9)]
        cache.keep_rows(torch.tensor([0]))
        steps += [model(seqs[0][None, t : t + 1], kv_cache=cache)[[0, 0]] for t in range(9, 13)]
        got = torch.cat(steps, dim=1)  # (2, 13, V), the second row's last 4 are the first's
        torch.testing.assert_close(
            got[:, :9], model(torch.stack([s[:9] for s in seqs])), rtol=1e-4, atol=1e-4
        )
        torch.testing.assert_close(got[0], model(seqs[0][None])[0], rtol=1e-4, atol=1e-4)
    # the engine's slots: a right-padded prefill of two slots apart (a copied window), steps, a rewind
    slots = DecodeSlots(model, num_slots=3, max_len=32)
    first = slots.prefill_many([0, 2], [seqs[0][:7].tolist(), seqs[1][:4].tolist()])
    decoded = [
        slots.step(torch.stack([seqs[0][7 + t], seqs[0][0], seqs[1][4 + t]]), torch.tensor([1, 0, 1])).logits
        for t in range(3)
    ]
    full = [model(seqs[0][None, :10])[0], model(seqs[1][None, :7])[0]]
    torch.testing.assert_close(first, torch.stack([full[0][6], full[1][3]]), rtol=1e-4, atol=1e-4)
    for t, logits in enumerate(decoded):
        torch.testing.assert_close(
            logits[[0, 2]], torch.stack([full[0][7 + t], full[1][4 + t]]), rtol=1e-4, atol=1e-4
        )
    slots.rewind(0, 8)  # back before seqs[0][8]; a different token there, and the one after it
    other = (seqs[0][8] + 1) % V
    out = [
        slots.step(torch.tensor([tok, 0, 0]), torch.tensor([1, 0, 0])).logits[0]
        for tok in (other, seqs[0][9])
    ]
    again = model(torch.cat([seqs[0][:8], other[None], seqs[0][9:10]])[None])[0]
    torch.testing.assert_close(torch.stack(out), again[8:10], rtol=1e-4, atol=1e-4)


def pretrain_flags(corpus_and_tokenizer, run_dir, *extra: str) -> list[str]:
    corpus, tokenizer = corpus_and_tokenizer
    tiny = "--depth 1 --seq-len 32 --device-batch 4 --batch-tokens 128 --steps 3 --eval-batches 1"
    return ["pretrain", "--preset", "cpu-tiny", *tiny.split(), "--corpus", str(corpus), "--tokenizer",
            str(tokenizer), "--run-dir", str(run_dir), "--dtype", "fp32", *extra]  # fmt: skip


@pytest.mark.slow
def test_pretrain_flags_reach_the_checkpoint_and_export_refuses_them(corpus_and_tokenizer, tmp_path, capsys):
    flags = ["--value-embeds", "--resid-scalars", "--smear", "--backout"]
    assert main(pretrain_flags(corpus_and_tokenizer, tmp_path / "run", *flags)) == 0
    model, _, meta = load_model(tmp_path / "run")
    assert model.config.options == list(MODEL_OPTIONS) and meta.step == 3
    assert all(
        json.loads((latest_checkpoint(tmp_path / "run") / "meta.json").read_text())["model_config"][o]
        for o in MODEL_OPTIONS
    )
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "value_embeds, resid_scalars, smear, backout" in err, err
    assert not (tmp_path / "hf").exists()


def test_optimizer_adamw_trains_the_matrices_with_adamw(corpus_and_tokenizer, tmp_path):
    settings = TrainSettings(optimizer="adamw", adamw_matrix_lr=0.003)
    opt = stage_optimizer(settings, GPT(config("smear")))
    assert not any(isinstance(o, Muon) for o in opt.optimizers)
    matrices = next(g for g in opt.param_groups if g["name"] == "matrices")
    assert matrices["lr"] == pytest.approx(0.003 * (32 / 768) ** -0.5) and len(matrices["params"]) == 18
    assert main(pretrain_flags(corpus_and_tokenizer, tmp_path / "run", "--optimizer", "adamw")) == 0
    losses = [
        json.loads(line).get("loss") for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [loss for loss in losses if loss is not None]
    assert len(losses) == 3 and all(loss == loss and loss < 10 for loss in losses)


def test_muon_settings_reach_the_optimizer(corpus_and_tokenizer, tmp_path):
    opt = stage_optimizer(TrainSettings(ns_steps=3), GPT(config()))
    (muon,) = [o for o in opt.optimizers if isinstance(o, Muon)]
    assert muon.ns_coefficients == NEWTON_SCHULZ_SCHEDULES[3] and len(muon.ns_coefficients) == 3
    flags = ["--ns-steps", "5", "--muon-momentum", "0.9", "--muon-ramp-steps", "0"]
    assert main(pretrain_flags(corpus_and_tokenizer, tmp_path / "run", *flags)) == 0
    state = torch.load(latest_checkpoint(tmp_path / "run") / "optimizer.pt", weights_only=True)
    momenta = [g["momentum"] for o in state["optimizers"] for g in o["param_groups"] if "momentum" in g]
    assert momenta and all(m == pytest.approx(0.9) for m in momenta)  # the ramp's 0.85 start is skipped
