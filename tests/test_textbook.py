"""The textbook path (every equation through picochat/equations.py) agrees with the fast path."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from test_engine import tiny_gpt, tiny_tokenizer

from picochat.checkpoint import CheckpointMeta, save_checkpoint
from picochat.cli import main
from picochat.equations import in_textbook_mode, textbook_mode
from picochat.model import GPT, GPTConfig
from picochat.paths import checkpoints_dir
from picochat.settings import TrainSettings
from picochat.textbook import TextbookAdamW, use_textbook_adamw
from picochat.training import stage_optimizer

CONFIG = GPTConfig(vocab_size=61, seq_len=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32)


def pair() -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    fast = GPT(CONFIG)
    with torch.no_grad():  # the zero-initialised output projections would hide attention and the MLP
        for p in fast.parameters():
            p.add_(0.05 * torch.randn_like(p))
    textbook = copy.deepcopy(fast)
    textbook.textbook = True
    return fast, textbook


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, CONFIG.vocab_size, (3, 16), generator=g)
    targets = torch.randint(0, CONFIG.vocab_size, (3, 16), generator=g)
    targets[0, :5] = -1  # masked targets, as SFT has them
    return idx, targets


def test_textbook_mode_calls_no_fused_kernel(monkeypatch):
    fast, textbook = pair()
    idx, targets = batch()

    def fused(*args, **kwargs):
        raise AssertionError("a fused kernel ran in textbook mode")

    for name in ("scaled_dot_product_attention", "rms_norm", "cross_entropy", "relu"):
        monkeypatch.setattr(F, name, fused)
    textbook(idx, targets).backward()  # forward and backward through the plain functions
    assert not in_textbook_mode()  # the mode ends with the forward
    with pytest.raises(AssertionError, match="fused kernel"):
        fast(idx, targets)


def test_logits_loss_and_gradients_agree():
    fast, textbook = pair()
    idx, targets = batch()
    torch.testing.assert_close(textbook(idx), fast(idx), rtol=1e-5, atol=1e-5)
    for reduction in ("sum", "none"):
        torch.testing.assert_close(
            textbook(idx, targets, loss_reduction=reduction),
            fast(idx, targets, loss_reduction=reduction),
            rtol=1e-5,
            atol=1e-5,
        )
    fast_loss, textbook_loss = fast(idx, targets), textbook(idx, targets)
    torch.testing.assert_close(textbook_loss, fast_loss, rtol=1e-6, atol=1e-6)
    fast_loss.backward()
    textbook_loss.backward()
    for (name, a), b in zip(fast.named_parameters(), textbook.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_kv_cache_decoding_agrees():
    fast, textbook = pair()
    idx, _ = batch()
    caches = [m.make_kv_cache(3, 32) for m in (fast, textbook)]
    prefill = [m(idx[:, :10], kv_cache=c) for m, c in zip((fast, textbook), caches)]
    torch.testing.assert_close(prefill[1], prefill[0], rtol=1e-5, atol=1e-5)
    step = [m(idx[:, 10:11], kv_cache=c) for m, c in zip((fast, textbook), caches)]
    torch.testing.assert_close(step[1], step[0], rtol=1e-5, atol=1e-5)


def test_one_optimizer_step_agrees():
    fast, textbook = pair()
    idx, targets = batch()
    fast_opt = stage_optimizer(TrainSettings(), fast)
    textbook_opt = stage_optimizer(TrainSettings(), textbook)
    use_textbook_adamw(textbook_opt)
    assert any(isinstance(o, TextbookAdamW) for o in textbook_opt.optimizers)
    for model, opt in ((fast, fast_opt), (textbook, textbook_opt)):
        model(idx, targets).backward()
        opt.step()
    matrices = {id(p) for p in fast.layers.parameters()}
    for (name, a), b in zip(fast.named_parameters(), textbook.parameters()):
        # AdamW (embedding, head) agrees to float tolerance. Muon orthogonalises in bf16, where a gradient
        # that differs in its last float32 bits may round the other way: an entry moves by a few percent
        # of the learning rate (0.02) at most, and on average by far less.
        atol = 1e-3 if id(a) in matrices else 1e-6
        torch.testing.assert_close(b, a, rtol=0, atol=atol, msg=name)
        assert (b - a).abs().mean() < 1e-4, name


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_textbook_adamw_matches_torch_adamw_step_for_step(weight_decay):
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 4))
    b = torch.nn.Parameter(a.detach().clone())
    kwargs = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=weight_decay)
    reference, textbook = torch.optim.AdamW([a], **kwargs), TextbookAdamW([b], kwargs)
    for step in range(5):
        grad = torch.randn(5, 4)
        a.grad, b.grad = grad.clone(), grad.clone()
        reference.step()
        textbook.step()
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7, msg=f"step {step}")
    textbook_state = textbook.state_dict()["state"][0]
    torch.testing.assert_close(textbook_state["exp_avg_sq"], reference.state_dict()["state"][0]["exp_avg_sq"])


def test_textbook_mode_nests_and_restores():
    with textbook_mode():
        assert in_textbook_mode()
        with textbook_mode(False):
            assert not in_textbook_mode()
        assert in_textbook_mode()
    assert not in_textbook_mode()


def test_chat_textbook_flag_answers_like_the_fast_path(capsys):
    tok = tiny_tokenizer()
    save_checkpoint(
        checkpoints_dir() / "sft", tiny_gpt(tok.vocab_size), CheckpointMeta(step=1), tokenizer=tok
    )
    argv = ["chat", "-p", "What is 2+3?", "--max-tokens", "6", "--temperature", "0", "--tool", "none"]
    answers = []
    for extra in ([], ["--textbook"]):
        assert main([*argv, "--dtype", "fp32", *extra]) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1] and answers[0].strip()
