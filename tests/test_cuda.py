"""The code paths that run only on CUDA (docs/gpu.md lists them), one test each, against the plain path
they replace. Marked `cuda`: skipped without a GPU; `bench/gpu_check.sh` runs them first on a GPU node."""

import pytest
import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel

from picochat import checkpoint, equations, optim, runtime
from picochat.data.conversations import SFTLoader
from picochat.data.corpus import write_synthetic_corpus
from picochat.data.loader import PretrainLoader
from picochat.data.shards import iter_documents, list_shards
from picochat.decode import DecodeSlots
from picochat.model import GPT, GPTConfig
from picochat.pretrain import preset_config, pretrain
from picochat.tasks import parse_mixture
from picochat.tokenizer import Tokenizer
from tests.tiny_models import tiny_gpt

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def corpus_and_tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("cuda_data")
    corpus = write_synthetic_corpus(root / "corpus", n_docs=80, seed=9)
    Tokenizer.train(list(iter_documents(list_shards(corpus, "train"))), vocab_size=300).save(root / "tok")
    return corpus, root / "tok"


def small_model(device, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_depth(2, vocab_size=300, seq_len=64)).to(device)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_training_in_bf16_and_fp16_autocast(corpus_and_tokenizer, tmp_path, dtype):
    """runtime.compute_dtype picks bf16 (fp16 where bf16 is missing); fp16 trains through the GradScaler."""
    assert runtime.compute_dtype(CUDA) == (
        torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    )
    corpus, tokenizer = corpus_and_tokenizer
    config = preset_config(
        "cpu-tiny", corpus=corpus, tokenizer=tokenizer, run_dir=tmp_path, device="cuda", dtype=dtype,
        depth=1, seq_len=64, device_batch=4, batch_tokens=256, steps=6, eval_batches=1,
    )  # fmt: skip
    result = pretrain(config)
    assert result["step"] == 6 and torch.isfinite(torch.tensor(result["loss"]))
    meta = checkpoint.read_meta(checkpoint.latest_checkpoint(tmp_path))
    assert (meta.grad_scaler is not None) == (dtype == "fp16")


def test_autocast_forward_matches_fp32():
    model = small_model(CUDA)
    idx = torch.randint(0, 300, (2, 64), device=CUDA)
    with torch.no_grad():
        exact = model(idx)
        with runtime.autocast(CUDA, torch.bfloat16):
            fast = model(idx)
    assert fast.dtype == torch.float32  # logits come back in fp32 for the loss
    torch.testing.assert_close(fast, exact, rtol=0.05, atol=0.05)


def test_fused_adamw_and_compiled_muon_step_like_the_plain_optimizers():
    """build_optimizer on a GPU: fused AdamW, Muon's stacked compiled update, bf16 Newton–Schulz."""
    assert optim.newton_schulz_dtype(CUDA) == torch.bfloat16
    models = [small_model(CUDA), small_model(CUDA)]
    rates = dict(embedding_lr=0.2, head_lr=0.004, matrix_lr=0.02, weight_decay=0.0, tokens_per_step=None)
    fast = optim.build_optimizer(models[0], compile=True, **rates)
    plain = optim.build_optimizer(models[1], compile=False, **rates)
    assert fast.optimizers[0].defaults["fused"] and fast.optimizers[1].stack
    plain.optimizers[0].defaults["fused"] = False
    for group in plain.optimizers[0].param_groups:
        group["fused"] = False
    idx = torch.randint(0, 300, (4, 64), device=CUDA)
    for model, optimizer in zip(models, (fast, plain)):
        for _ in range(3):
            model(idx, idx).backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)


def test_batched_newton_schulz_matches_one_matrix_at_a_time():
    X = torch.randn(3, 64, 256, device=CUDA)
    batched = optim.orthogonalize(X)
    single = torch.stack([optim.orthogonalize(x) for x in X.unbind(0)])
    torch.testing.assert_close(batched, single, rtol=1e-2, atol=1e-2)


def test_compiled_training_loss_matches_eager():
    model = small_model(CUDA)
    idx = torch.randint(0, 300, (4, 64), device=CUDA)
    with runtime.autocast(CUDA, torch.bfloat16):
        eager, compiled = model(idx, idx), torch.compile(model)(idx, idx)
    torch.testing.assert_close(compiled, eager, rtol=1e-2, atol=1e-2)


def test_cuda_graph_decoding_matches_eager_decoding():
    """DecodeSlots compiled on a GPU replays CUDA graphs (mode reduce-overhead) on static cache addresses."""
    model = tiny_gpt(vocab_size=300).to(CUDA)
    graphs = DecodeSlots(model, num_slots=4, max_len=48, dtype=torch.float32, compile=True)
    eager = DecodeSlots(model, num_slots=4, max_len=48, dtype=torch.float32, compile=False)
    assert graphs._cuda_graphs and not eager._cuda_graphs
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
    picks = []
    for slots in (graphs, eager):
        first = slots.prefill_many(list(range(4)), prompts).argmax(-1)  # (4,)
        active = torch.ones(4, dtype=torch.bool)
        picks.append(slots.run(first, active, steps=12, pick=lambda scored, i: scored.argmax)[0])
    assert torch.equal(picks[0], picks[1])


@pytest.mark.parametrize(
    "backend", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
)
def test_each_sdpa_backend_computes_the_attention_formula(backend):
    q = torch.randn(2, 4, 128, 64, device=CUDA, dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    with sdpa_kernel(backend):
        fast = equations.attention(q, k, v, causal=True)
    mask = equations.causal_mask(128, 128, device=CUDA)  # (T, S): 0 where visible, −∞ above the diagonal
    exact = equations.scaled_dot_product_attention(q.float(), k.float(), v.float(), mask)
    torch.testing.assert_close(fast.float(), exact, rtol=3e-2, atol=3e-2)


def test_nccl_process_group_and_ddp_step_like_one_process(tmp_path):
    """init_distributed's NCCL group and DDP with device_ids, in a group of one (one GPU per rank)."""
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("nccl", store=store, rank=0, world_size=1, device_id=CUDA)
    try:
        plain, wrapped = small_model(CUDA), small_model(CUDA)
        ddp = torch.nn.parallel.DistributedDataParallel(wrapped, device_ids=[0])
        idx = torch.randint(0, 300, (4, 64), device=CUDA)
        plain(idx, idx).backward()
        ddp(idx, idx).backward()
        for a, b in zip(plain.parameters(), wrapped.parameters()):
            torch.testing.assert_close(a.grad, b.grad)
        total = torch.ones(1, device=CUDA)
        dist.all_reduce(total)
        assert total.item() == 1.0
    finally:
        dist.destroy_process_group()


def test_loaders_pin_memory_and_copy_without_blocking(corpus_and_tokenizer):
    corpus, tokenizer_dir = corpus_and_tokenizer
    tokenizer = Tokenizer.load(tokenizer_dir)
    shards = list_shards(corpus, "train")
    on_gpu, on_cpu = (PretrainLoader(shards, tokenizer, 4, 64, device=d) for d in (CUDA, "cpu"))
    for _ in range(3):
        (gi, gt), (ci, ct) = next(on_gpu), next(on_cpu)
        assert gi.is_cuda and torch.equal(gi.cpu(), ci) and torch.equal(gt.cpu(), ct)
    mixture = "arithmetic:1"
    chats = [SFTLoader(parse_mixture(mixture, seed=0), tokenizer, 4, 64, device=d) for d in (CUDA, "cpu")]
    (gi, gt), (ci, ct) = next(chats[0]), next(chats[1])
    assert gi.is_cuda and torch.equal(gi.cpu(), ci) and torch.equal(gt.cpu(), ct)


def test_checkpoint_saves_and_restores_the_cuda_rng():
    state = checkpoint.rng_state()
    expected = torch.rand(3, device=CUDA)
    torch.rand(5, device=CUDA)  # move the generator on
    checkpoint.set_rng_state(state)
    assert "cuda" in state and torch.equal(torch.rand(3, device=CUDA), expected)


def test_peak_flops_names_the_gpu():
    name = torch.cuda.get_device_name(CUDA)
    known = [v for k, v in runtime.GPU_PEAKS.items() if k in name]
    assert runtime.peak_flops(CUDA, torch.bfloat16) == (known[0] if known else 312e12)
    assert runtime.peak_flops(CUDA, torch.float32) == runtime.peak_flops(CUDA, torch.bfloat16) / 2


def test_auto_device_is_the_local_ranks_gpu(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert runtime.pick_device() == torch.device("cuda", 0) and runtime.can_compile(CUDA)
