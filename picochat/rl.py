"""Reinforcement learning: GRPO on problems whose answers a program checks.

    picochat rl                                           # from the latest SFT checkpoint, default tasks
    picochat rl --tasks arithmetic:2,spelling:1 --steps 60 --group-size 8 --kl-coef 0.02
    picochat rl --eval-only                               # held-out pass@1 of the --base checkpoint
    torchrun --nproc_per_node=8 -m picochat rl --prompts-per-step 64

One step (GRPO): the engine samples G replies to each of `prompts_per_step` problems, the task's checker
gives each a reward r_i in [0, 1], A_i = (r_i − mean(r)) / (std(r) + ε) within its group, and the loss
runs over the sampled tokens only (forced tool outputs masked), normalised by their count N in the step:

        L(θ) = −1/N Σ_i Σ_t m_it [ min(ρ_it A_i, clip(ρ_it, 1 − ε_c, 1 + ε_c) A_i) − β k3_it ]
        ρ_it = π_θ(y_it | ·) / π_old(y_it | ·)            (= 1 with value, gradient ∇log π, on the first update)
        k3_it = π_ref/π_θ − log(π_ref/π_θ) − 1            (per-token estimate of KL(π_θ ‖ π_ref), ≥ 0)

`updates_per_batch` > 1 reuses the batch (π_old sampled it; the clip keeps later updates near it, PPO);
β = `kl_coef` pulls toward the frozen start π_ref. `GRPOTrainer` replaces only the step of the shared loop
(`picochat.training`); docs/rl.md has the details and how to add a task.

Shapes: P prompts, G replies per prompt, B = P·G rows, T time, V vocab.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from picochat.atomic import atomic_write_json
from picochat.checkpoint import latest_checkpoint, load_model
from picochat.engine import Engine, SamplingParams
from picochat.equations import kl_divergence, log_softmax
from picochat.errors import UserError
from picochat.progress import MetricsLog
from picochat.runtime import DistInfo, autocast, can_compile
from picochat.settings import RLConfig, validate
from picochat.tasks import parse_task_mix
from picochat.training import StageRun, Trainer, start_stage, train_stage

__all__ = ["RLConfig", "rl"]


def rl(config: RLConfig, eval_only: bool = False, tool=None) -> dict:
    """Improve a chat checkpoint by GRPO on checkable tasks; returns the final held-out evaluation."""
    validate(config)
    train = config.train
    run = start_stage(train)
    model, tokenizer, base_meta = load_model(config.base, run.device)
    mix = parse_task_mix(config.tasks, seed=train.seed)
    tool = tool or config.tool  # "calculator", "none", or the sandbox the command built for "python"
    # Both engines decode `model` itself: a compiled step reads the parameters the optimizer updates in place.
    compile = config.rollout_compile and can_compile(run.device)
    evaluate = held_out_evaluation(config, run, mix, Engine(model, tokenizer, tool=tool, compile=compile))
    if eval_only:
        result = evaluate(model)
        run.message(format_evaluation(result))
        return result

    reference, _, _ = load_model(config.base, run.device)  # frozen: the KL penalty's π_ref
    reference.requires_grad_(False)
    model.train()
    dtype = None if run.device.type == "cpu" else train.dtype
    engine = Engine(model, tokenizer, tool=tool, dtype=dtype, compile=compile)
    fresh = train.resume == "never" or (train.resume == "auto" and latest_checkpoint(train.run_dir) is None)
    if fresh and config.eval_before and not train.restart_schedule:
        run.message(f"before RL: {format_evaluation(evaluate(model, start=True))}")

    def make_loader(rank: int, world_size: int) -> ProblemStream:
        return ProblemStream(mix, train.device_batch // config.group_size, rank, world_size)

    run.message(
        f"RL (GRPO) from {config.base} (step {base_meta.step}): tasks {config.tasks}; {config.prompts_per_step} "
        f"problems × {config.group_size} replies per step; kl_coef {config.kl_coef}"
    )
    names = "tasks prompts_per_step group_size max_new_tokens kl_coef clip_eps updates_per_batch temperature"
    fingerprint = {name: getattr(config, name) for name in [*names.split(), "top_k", "tool"]}
    setup = GRPOSetup(config, engine, reference, tokenizer.bos_id)
    return train_stage(
        run,
        "rl",
        config,
        model,
        tokenizer,
        make_loader,
        evaluate=evaluate,
        lr_scale=config.lr_frac,
        fingerprint={**fingerprint, "base_step": base_meta.step},
        trainer_class=partial(GRPOTrainer, setup),
    )


@dataclass
class GRPOSetup:
    """What a GRPO step needs besides the Trainer's own: the settings, the engine and the reference."""

    config: RLConfig
    engine: Engine  # over the policy being trained
    reference: torch.nn.Module  # the frozen starting model, π_ref
    pad_id: int


class GRPOTrainer(Trainer):
    """The shared Trainer with a GRPO step: sample and score replies, then update on them."""

    def __init__(self, setup: GRPOSetup, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.grpo = setup

    def train_step(self) -> float:
        config = self.grpo.config
        batches = [self.sample(micro, next(source)) for micro, source in enumerate(self.sources)]
        stats = self.all_reduce(sum(b.stats() for b in batches))
        num_tokens = max(float(stats[8]), 1.0)  # masked-in tokens of the whole step, every rank: N
        old_logp, ref_logp = [None] * len(batches), [None] * len(batches)
        kl_sum, loss_sum = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        loss_fn = partial(grpo_loss, num_tokens=num_tokens, clip_eps=config.clip_eps, kl_coef=config.kl_coef)
        for update in range(config.updates_per_batch):
            for micro, batch in enumerate(batches):
                with self.gradient_sync(micro):
                    with autocast(self.device, self.dtype):
                        logits = self.model(batch.inputs)  # (B, T, V) fp32
                    log_probs = log_softmax(logits)  # (B, T, V)
                    logp = pick(log_probs, batch.targets)  # (B, T)
                    if update == 0:  # π_old is the policy that sampled the batch
                        old_logp[micro] = logp.detach()
                        ref_logp[micro], kl = self.reference_pass(batch, log_probs.detach())
                        kl_sum += kl
                    loss = loss_fn(
                        logp, old_logp[micro], batch.advantages, batch.mask, ref_logp=ref_logp[micro]
                    )
                    # the loss is a sum over the whole step already; DDP averages gradients over ranks
                    self.scaler.scale(loss * self.dist.world_size).backward()
                loss_sum += float(loss.detach())
            self.optimizer_update()
        loss_sum, kl_sum = self.all_reduce(torch.stack([loss_sum, kl_sum])).tolist()
        self.tokens_per_step = int(stats[8])  # tokens/s and MFU count the sampled tokens trained on
        self.flops_per_step = self.raw_model.flops_per_token() * self.tokens_per_step
        self.log_rl_metrics(stats, kl_sum / num_tokens)
        return loss_sum / config.updates_per_batch

    def sample(self, micro: int, problems: list) -> Rollouts:
        """A micro-batch's replies, seeded by (seed, step, virtual rank): a resumed run samples the same."""
        config = self.grpo.config
        longest = max(len(self.grpo.engine.tokenizer.render_for_completion(p.messages)) for _, p in problems)
        room = min(config.max_new_tokens, self.s.seq_len - longest)
        if room < 1:
            raise UserError(
                f"a prompt of {longest} tokens leaves no room for a reply in --seq-len {self.s.seq_len}; "
                "raise --seq-len"
            )
        seed = rollout_seed(self.s.seed, self.step, self.run.virtual_rank(micro))
        params = SamplingParams(
            max_tokens=room, temperature=config.temperature, top_k=config.top_k, seed=seed
        )
        grpo = self.grpo
        return sample_rollouts(grpo.engine, problems, config.group_size, params, grpo.pad_id, self.device)

    def reference_pass(self, batch: Rollouts, log_probs: Tensor) -> tuple[Tensor | None, float]:
        """log π_ref of the sampled tokens (for the penalty) and Σ exact KL(π_θ ‖ π_ref) (for the log)."""
        with torch.no_grad(), autocast(self.device, self.dtype):
            ref_logits = self.grpo.reference(batch.inputs)  # (B, T, V)
        ref_all = log_softmax(ref_logits.float())  # (B, T, V)
        kl = kl_divergence(log_probs, ref_all)  # (B, T)
        ref_logp = pick(ref_all, batch.targets) if self.grpo.config.kl_coef else None
        return ref_logp, float((kl * batch.mask).sum())

    def all_reduce(self, values: Tensor) -> Tensor:
        if not self.dist.is_distributed:
            return values
        values = values.to(self.device)
        torch.distributed.all_reduce(values)
        return values.cpu()

    def log_rl_metrics(self, stats: Tensor, kl: float) -> None:
        samples, r_sum, r_sq, correct, groups, any_correct, reply_tokens, tool_calls, _ = stats.tolist()
        mean = r_sum / samples
        std = math.sqrt(max(r_sq / samples - mean**2, 0.0))
        record = {"reward_mean": mean, "reward_std": std, "pass_at_1": correct / samples}
        record |= {"pass_at_g": any_correct / groups, "kl": kl}
        record |= {"completion_len": reply_tokens / samples, "tool_calls": tool_calls / samples}
        self.step_metrics = record
        if (self.step + 1) % self.s.log_every == 0 or self.step == 0:
            self.run.message(
                f"step {self.step + 1}: reward {mean:.3f} | pass@1 {record['pass_at_1']:.3f} | "
                f"pass@{self.grpo.config.group_size} {record['pass_at_g']:.3f} | kl {kl:.4f} | "
                f"reply {record['completion_len']:.1f} tokens, {record['tool_calls']:.2f} tool calls"
            )


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """A_i = (r_i − mean_j r_j) / (std_j r_j + ε) (population std) within each group; (P, G) -> (P, G)."""
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, correction=0)
    return (rewards - mean) / (std + eps)


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from the log-probabilities of tokens sampled from π:

        k3 = r − log r − 1,  r = π_ref(y) / π(y)

    Unbiased (E_{y∼π}[r] = 1, so E[k3] = E[−log r] = KL(π ‖ π_ref)), never negative (x − 1 ≥ log x), and of
    lower variance than −log r alone. Same shape as its inputs."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    num_tokens: float,
    *,
    clip_eps: float,
    kl_coef: float,
    ref_logp: Tensor | None = None,
) -> Tensor:
    """The clipped policy-gradient loss with a KL penalty (`kl_coef` > 0), summed over masked-in tokens / N.
    logp, old_logp, ref_logp, mask: (B, T) — log π_θ, log π_old, log π_ref of the sampled tokens; mask 1 on
    sampled reply tokens, 0 elsewhere (prompt, forced tool output, padding). advantages: (B,), one per reply.
    num_tokens: N, the masked-in tokens of the whole step, so every token weighs the same (token level)."""
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages[:, None]  # (B, 1)
    objective = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    if kl_coef:
        objective = objective - kl_coef * kl_k3(logp, ref_logp)
    return -(objective * mask).sum() / num_tokens


def pick(log_probs: Tensor, targets: Tensor) -> Tensor:
    """The log-probabilities (B, T, V) of the targets (B, T) -> (B, T); targets < 0 give 0."""
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(targets >= 0, picked, 0.0)


@dataclass
class Rollouts:
    """The sampled replies of one micro-batch as training rows, with their rewards."""

    inputs: Tensor  # (B, T) prompt + reply, shifted: the tokens the model reads
    targets: Tensor  # (B, T) the next tokens; -1 on padding
    mask: Tensor  # (B, T) float, 1 on reply tokens the model sampled
    advantages: Tensor  # (B,)
    rewards: Tensor  # (P, G)
    reply_tokens: list[int]  # per reply, every new token (tool outputs included)
    tool_calls: list[int]  # per reply

    def stats(self) -> Tensor:
        """Sums: samples, Σr, Σr², correct, groups, solved groups, reply tokens, tool calls, masked tokens."""
        r, correct = self.rewards, self.rewards >= 1.0
        sums = [r.numel(), r.sum(), (r**2).sum(), correct.sum(), r.size(0), correct.any(dim=-1).sum()]
        sums += [sum(self.reply_tokens), sum(self.tool_calls), self.mask.sum()]
        return torch.tensor([float(x) for x in sums], dtype=torch.float64)


def sample_rollouts(engine, problems: list, group_size: int, params, pad_id: int, device) -> Rollouts:
    """Sample `group_size` replies per (task, problem), score them, lay them out as prompt + reply rows."""
    prompts = [engine.tokenizer.render_for_completion(problem.messages) for _, problem in problems]
    results = generate_quietly(engine, [p for p in prompts for _ in range(group_size)], params)
    rewards = [
        [task.reward(problem, results[i * group_size + g].text) for g in range(group_size)]
        for i, (task, problem) in enumerate(problems)
    ]
    rows = [prompts[i // group_size] + result.tokens for i, result in enumerate(results)]
    masks = [[0] * len(prompts[i // group_size]) + result.mask for i, result in enumerate(results)]
    T = max(len(r) for r in rows) - 1
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), -1, dtype=torch.long)
    mask = torch.zeros((len(rows), T))
    for b, (row, m) in enumerate(zip(rows, masks)):
        n = len(row) - 1
        inputs[b, :n] = torch.tensor(row[:-1])
        targets[b, :n] = torch.tensor(row[1:])
        mask[b, :n] = torch.tensor(m[1:], dtype=torch.float32)  # target t is token t + 1 of the row
    rewards = torch.tensor(rewards, dtype=torch.float32)  # (P, G)
    on_device = [t.to(device) for t in (inputs, targets, mask, group_advantages(rewards).flatten())]
    return Rollouts(*on_device, rewards, [len(r.tokens) for r in results], [r.tool_calls for r in results])


def generate_quietly(engine, prompts: list[list[int]], params: SamplingParams) -> list:
    """engine.generate without the SyntaxWarnings of garbled expressions the model writes for its tools."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return engine.generate(prompts, params)


def rollout_seed(seed: int, step: int, virtual_rank: int) -> int:
    """The sampling seed of one micro-batch: a function of the step and virtual rank alone."""
    return int(np.random.SeedSequence([seed, step, virtual_rank]).generate_state(1, dtype=np.uint32)[0])


class ProblemStream:
    """The training problems of one virtual rank (n mod world_size); resumes with the very next one."""

    def __init__(self, mix, prompts: int, rank: int = 0, world_size: int = 1):
        self.mix, self.prompts, self.rank, self.world_size = mix, prompts, rank, world_size
        self.next_local = 0

    def __iter__(self):
        return self

    def __next__(self) -> list:
        numbers = [(self.next_local + j) * self.world_size + self.rank for j in range(self.prompts)]
        self.next_local += self.prompts
        return [self.mix.training_problem(n) for n in numbers]

    def state_dict(self) -> dict:
        return {"next_local": self.next_local, "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise UserError(
                "RL problem stream state belongs to another rank layout; resume with the same world size"
            )
        self.next_local = int(state["next_local"])


def held_out_evaluation(config: RLConfig, run: StageRun, mix, engine: Engine):
    """evaluate(model, start=False) -> held-out pass@1; the start's outcomes are saved for `paired_gain`."""
    before_file = Path(config.train.run_dir) / "held_out_before.json"  # the starting model's outcomes

    def evaluate(model, start: bool = False) -> dict:  # model: the Trainer's raw model, the engine's
        result = evaluate_held_out(engine, mix, config, run.dist)
        outcomes = result.pop("outcomes")
        if start and run.dist.is_main:
            atomic_write_json(before_file, {"tasks": config.tasks, "outcomes": outcomes})
            write_before(before_file.parent, result)
        elif not start and before_file.exists():
            before = json.loads(before_file.read_text())
            if before["tasks"] == config.tasks and len(before["outcomes"]) == len(outcomes):
                gain = paired_gain(before["outcomes"], outcomes)
                result["paired_gain"], result["paired_gain_stderr"] = gain
        return result

    return evaluate


def evaluate_held_out(engine, mix, config: RLConfig, dist: DistInfo, batch: int = 64) -> dict:
    """Greedy pass@1 on the first `eval_problems` held-out problems of each task, with its standard error
    √(p(1 − p)/n); ranks split the problems. `outcomes`: each problem's 0/1, for `paired_gain`."""
    tokenizer, device = engine.tokenizer, engine.device
    outcomes = torch.zeros(len(mix.tasks), config.eval_problems, dtype=torch.float64, device=device)
    for t, task in enumerate(mix.tasks):
        mine = list(range(dist.rank, config.eval_problems, dist.world_size))
        for start in range(0, len(mine), batch):
            indices = mine[start : start + batch]
            chunk = [mix.held_out_problem(task, i) for i in indices]
            prompts = [tokenizer.render_for_completion(p.messages) for p in chunk]
            room = max(1, min(config.max_new_tokens, config.train.seq_len - max(len(p) for p in prompts)))
            results = generate_quietly(engine, prompts, SamplingParams(max_tokens=room, temperature=0.0))
            for i, problem, result in zip(indices, chunk, results):
                outcomes[t, i] = float(task.reward(problem, result.text) >= 1.0)
    if dist.is_distributed:
        torch.distributed.all_reduce(outcomes)
    result = {f"{task.name}_pass_at_1": outcomes[t].mean().item() for t, task in enumerate(mix.tasks)}
    n, p = outcomes.numel(), outcomes.mean().item()
    stderr = math.sqrt(p * (1 - p) / max(n, 1))
    outcomes = [int(x) for x in outcomes.flatten().tolist()]
    return {**result, "pass_at_1": p, "pass_at_1_stderr": stderr, "problems": n, "outcomes": outcomes}


def paired_gain(before: list[int], after: list[int]) -> tuple[float, float]:
    """The mean of after − before over the same problems and its standard error s_d/√n (paired)."""
    if len(before) != len(after) or len(before) < 2:
        raise ValueError("a paired comparison needs the same two or more problems on both sides")
    d = torch.tensor(after, dtype=torch.float64) - torch.tensor(before, dtype=torch.float64)
    return d.mean().item(), (d.std(correction=1) / math.sqrt(len(d))).item()


def format_evaluation(result: dict) -> str:
    per_task = [(k.removesuffix("_pass_at_1"), v) for k, v in result.items() if k.endswith("_pass_at_1")]
    tasks = ", ".join(f"{name} {v:.3f}" for name, v in per_task)
    gain, err = result.get("paired_gain"), result.get("paired_gain_stderr")
    gain = "" if gain is None else f"; against the start, {gain:+.3f} ± {err:.3f} (paired)"
    return (
        f"held-out pass@1 {result['pass_at_1']:.3f} ± {result['pass_at_1_stderr']:.3f} "
        f"over {result['problems']} problems ({tasks}){gain}"
    )


def write_before(run_dir: Path, result: dict) -> None:
    """The starting model's evaluation, as the step-0 record of metrics.jsonl."""
    log = MetricsLog(run_dir / "metrics.jsonl")
    log.truncate_after(0)
    log.write({"step": 0, **{f"val_{k}": v for k, v in result.items()}})
    log.close()
