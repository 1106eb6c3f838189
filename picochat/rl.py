"""Reinforcement learning: GRPO on problems whose answers a program checks.

    picochat rl                                           # from the latest SFT checkpoint, default tasks
    picochat rl --tasks arithmetic:2,spelling:1 --steps 60 --group-size 8 --kl-coef 0.02
    picochat rl --eval-only                               # held-out pass@1 of the --base checkpoint
    torchrun --nproc_per_node=8 -m picochat rl --prompts-per-step 64

One step (GRPO, "group relative policy optimisation"):
  1. take `prompts_per_step` training problems; the engine samples a group of G replies to each
     (tools on, batched, seeded by (seed, step, virtual rank), so a resumed run samples the same replies);
  2. the task's checker gives each reply a reward r_i in [0, 1];
  3. advantage A_i = (r_i − mean(r)) / (std(r) + ε) within its group: better than its siblings → > 0;
  4. the policy-gradient loss over the sampled tokens only (tool outputs forced into the reply are masked),
     normalised by the number of such tokens in the whole step (token level):

        L(θ) = −1/N Σ_i Σ_t m_it [ min(ρ_it A_i, clip(ρ_it, 1 − ε_c, 1 + ε_c) A_i) − β k3_it ]
        ρ_it = π_θ(y_it | ·) / π_old(y_it | ·)            (= 1 with value, gradient ∇log π, on the first update)
        k3_it = π_ref/π_θ − log(π_ref/π_θ) − 1            (per-token estimate of KL(π_θ ‖ π_ref), ≥ 0)

     `updates_per_batch` > 1 reuses the batch for several optimizer steps: π_old is the policy that
     sampled it and the clip keeps later updates near it (PPO). β = `kl_coef` (default 0) pulls toward
     the frozen starting model π_ref.

The rest (learning-rate schedule, checkpoints, exact resume, progress, torchrun, time budget) is the loop
of pretraining and SFT (`picochat.training`): `GRPOTrainer` only replaces what one step does. docs/rl.md
has the details and how to add a task.

Shapes: P prompts, G replies per prompt, B = P·G rows, T time, V vocab.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from picochat.equations import kl_divergence, log_softmax
from picochat.errors import UserError
from picochat.paths import checkpoints_dir


@dataclass
class RLConfig:
    base: Path = field(default_factory=lambda: checkpoints_dir() / "sft")
    run_dir: Path = field(default_factory=lambda: checkpoints_dir() / "rl")
    tasks: str = "arithmetic:1,spelling:1,gym:1"
    # GRPO
    prompts_per_step: int = 16  # problems per optimizer step, all devices together
    group_size: int = 8  # replies sampled per problem (G)
    max_new_tokens: int = 96  # per reply, tool outputs included
    temperature: float = 1.0
    top_k: int | None = None
    tool: str = "calculator"  # the engine's tool: calculator, python or none
    kl_coef: float = 0.0  # β: weight of the KL penalty to the starting model
    clip_eps: float = 0.2  # PPO ratio clip, active when updates_per_batch > 1
    updates_per_batch: int = 1  # optimizer steps on each sampled batch
    eval_problems: int = 50  # held-out problems per task at each evaluation
    eval_before: bool = True  # evaluate the starting model first (a fresh run only)
    # shared with pretraining and SFT
    device_batch: int = 32  # rows (replies) per micro-batch on each device; a multiple of group_size
    steps: int | None = 60
    time_budget_s: float | None = None
    lr_frac: float = 0.1  # fraction of pretraining's base learning rates
    embedding_lr: float = 0.2
    head_lr: float = 0.004
    matrix_lr: float = 0.02
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "wsd"
    warmdown_frac: float = 1.0  # a linear decay from the start
    grad_clip: float = 1.0
    eval_every: int = 0
    log_every: int = 5
    save_every: int = 10
    keep_last: int = 2
    dtype: str = "auto"
    compile: bool = False
    device: str = "auto"
    seed: int = 11
    resume: str = "auto"
    restart_schedule: bool = False
    stop_after_steps: int | None = None
    tensorboard: bool = False
    wandb_project: str | None = None


# ---- GRPO: the math ------------------------------------------------------------------------------------


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """A_i = (r_i − mean_j r_j) / (std_j r_j + ε) within each group; rewards (P, G) -> advantages (P, G).

    std is the population standard deviation √(1/G Σ_j (r_j − mean)²). A group whose replies all scored the
    same has advantage 0 everywhere: it says nothing about which reply was better.
    """
    mean = rewards.mean(dim=-1, keepdim=True)
    std = rewards.std(dim=-1, keepdim=True, correction=0)
    return (rewards - mean) / (std + eps)


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from the log-probabilities of tokens sampled from π:

        k3 = r − log r − 1,  r = π_ref(y) / π(y)

    Unbiased (E_{y∼π}[r] = 1, so E[k3] = E[−log r] = KL(π ‖ π_ref)), never negative (x − 1 ≥ log x), and of
    lower variance than −log r alone. Same shape as its inputs.
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, num_tokens: float,
              clip_eps: float = 0.2, ref_logp: Tensor | None = None, kl_coef: float = 0.0) -> Tensor:  # fmt: skip
    """The clipped policy-gradient loss with an optional KL penalty, summed over masked-in tokens / N.

    logp, old_logp, ref_logp, mask: (B, T) — log π_θ, log π_old, log π_ref of the sampled tokens; mask 1 on
    sampled reply tokens, 0 elsewhere (prompt, forced tool output, padding). advantages: (B,), one per reply.
    num_tokens: N, the masked-in tokens of the whole step, so every token weighs the same (token level).
    """
    ratio = torch.exp(logp - old_logp)  # (B, T)
    adv = advantages[:, None]  # (B, 1)
    objective = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    if kl_coef:
        objective = objective - kl_coef * kl_k3(logp, ref_logp)
    return -(objective * mask).sum() / num_tokens


def token_logprobs(logits: Tensor, targets: Tensor) -> Tensor:
    """log π(targets) from logits (B, T, V) and targets (B, T) -> (B, T); targets < 0 give 0."""
    logp = log_softmax(logits.float()).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(targets >= 0, logp, 0.0)


# ---- rollouts ------------------------------------------------------------------------------------------


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
    texts: list[str]  # per reply

    def stats(self) -> Tensor:
        """Sums the step's metrics are made of: samples, Σr, Σr², correct, groups, groups with a correct
        reply, reply tokens, tool calls, masked-in tokens."""
        correct = self.rewards >= 1.0
        sums = [self.rewards.numel(), self.rewards.sum(), (self.rewards**2).sum(), correct.sum(), self.rewards.size(0),
                correct.any(dim=-1).sum(), sum(self.reply_tokens), sum(self.tool_calls), self.mask.sum()]  # fmt: skip
        return torch.tensor([float(x) for x in sums], dtype=torch.float64)


def sample_rollouts(engine, problems: list, group_size: int, params, pad_id: int, device) -> Rollouts:
    """Sample `group_size` replies to every (task, problem) with the engine, score them, and lay them out
    as rows of prompt + reply. The reply's mask comes from GenerationResult.mask (0 = forced by a tool)."""
    prompts = [engine.tokenizer.render_for_completion(problem.messages) for _, problem in problems]
    results = engine.generate([p for p in prompts for _ in range(group_size)], params)
    rewards = torch.tensor([
        [task.reward(problem, results[i * group_size + g].text) for g in range(group_size)]
        for i, (task, problem) in enumerate(problems)
    ], dtype=torch.float32)  # fmt: skip
    rows, masks = [], []
    for i, result in enumerate(results):
        prompt = prompts[i // group_size]
        rows.append(prompt + result.tokens)
        masks.append([0] * len(prompt) + result.mask)
    T = max(len(r) for r in rows) - 1
    inputs = torch.full((len(rows), T), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), -1, dtype=torch.long)
    mask = torch.zeros((len(rows), T))
    for b, (row, m) in enumerate(zip(rows, masks)):
        n = len(row) - 1
        inputs[b, :n] = torch.tensor(row[:-1])
        targets[b, :n] = torch.tensor(row[1:])
        mask[b, :n] = torch.tensor(m[1:], dtype=torch.float32)  # target t is token t + 1 of the row
    return Rollouts(
        inputs.to(device), targets.to(device), mask.to(device),
        group_advantages(rewards).flatten().to(device), rewards,
        [len(r.tokens) for r in results], [r.tool_calls for r in results], [r.text for r in results],
    )  # fmt: skip


def rollout_seed(seed: int, step: int, virtual_rank: int) -> int:
    """The sampling seed of one micro-batch: a function of the step and virtual rank alone."""
    return int(np.random.SeedSequence([seed, step, virtual_rank]).generate_state(1, dtype=np.uint32)[0])


class ProblemStream:
    """The training problems of one virtual rank: problem n belongs to virtual rank n mod world_size.
    The state is how many this rank has taken, so a resumed stream continues with the very next one."""

    def __init__(self, mix, prompts: int, rank: int = 0, world_size: int = 1):
        self.mix, self.prompts = mix, prompts
        self.rank, self.world_size = rank, world_size
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


# ---- evaluation ----------------------------------------------------------------------------------------


def evaluate_held_out(model, tokenizer, mix, problems_per_task: int, max_new_tokens: int, tool: str | None,
                      rank: int = 0, world_size: int = 1, batch: int = 64) -> dict:  # fmt: skip
    """Greedy pass@1 on the first `problems_per_task` held-out problems of each task, with its standard
    error √(p(1 − p)/n). Ranks split the problems and add up their counts."""
    import torch.distributed as dist

    from picochat.engine import Engine, SamplingParams

    engine = Engine(model, tokenizer, tool=tool)
    params = SamplingParams(max_tokens=max_new_tokens, temperature=0.0)
    device = next(model.parameters()).device
    counts = torch.zeros(len(mix.tasks), 2, dtype=torch.float64, device=device)  # (tasks, [correct, n])
    for t, task in enumerate(mix.tasks):
        mine = [mix.held_out_problem(task, i) for i in range(rank, problems_per_task, world_size)]
        for start in range(0, len(mine), batch):
            chunk = mine[start : start + batch]
            prompts = [tokenizer.render_for_completion(p.messages) for p in chunk]
            for problem, result in zip(chunk, engine.generate(prompts, params)):
                counts[t, 0] += float(task.reward(problem, result.text) >= 1.0)
                counts[t, 1] += 1
    if world_size > 1:
        dist.all_reduce(counts)
    result = {}
    for t, task in enumerate(mix.tasks):
        correct, n = counts[t].tolist()
        result[f"{task.name}_pass_at_1"] = correct / max(n, 1)
    correct, n = counts.sum(dim=0).tolist()
    p = correct / max(n, 1)
    result.update(pass_at_1=p, pass_at_1_stderr=math.sqrt(p * (1 - p) / max(n, 1)), problems=int(n))
    return result


# ---- the step ------------------------------------------------------------------------------------------


def make_grpo_trainer(trainer_class):
    """A subclass of the shared Trainer whose step is a GRPO step (sample, score, update)."""

    class GRPOTrainer(trainer_class):
        def setup_rl(self, config: RLConfig, engine, reference, pad_id: int) -> None:
            self.rl, self.engine, self.reference, self.pad_id = config, engine, reference, pad_id

        def train_step(self) -> float:
            from picochat.engine import SamplingParams
            from picochat.runtime import autocast

            config = self.rl
            batches = []
            for micro, source in enumerate(self.sources):
                params = SamplingParams(max_tokens=config.max_new_tokens, temperature=config.temperature,
                                        top_k=config.top_k,
                                        seed=rollout_seed(config.seed, self.step, self.virtual_rank(micro)))  # fmt: skip
                batches.append(sample_rollouts(self.engine, next(source), config.group_size, params,
                                               self.pad_id, self.device))  # fmt: skip
            stats = sum(b.stats() for b in batches)
            if self.dist.is_distributed:
                stats = stats.to(self.device)
                torch.distributed.all_reduce(stats)
                stats = stats.cpu()
            num_tokens = max(float(stats[8]), 1.0)  # masked-in tokens of the whole step, every rank

            reference_logp = [None] * len(batches)
            old_logp = [None] * len(batches)
            kl_sum = torch.zeros((), dtype=torch.float64)
            loss_sum = torch.zeros((), device=self.device)
            for update in range(config.updates_per_batch):
                for micro, batch in enumerate(batches):
                    last = micro == len(batches) - 1
                    sync = (
                        contextlib.nullcontext()
                        if last or not self.dist.is_distributed
                        else self.model.no_sync()
                    )
                    with sync:
                        with autocast(self.device, self.dtype):
                            logits = self.model(batch.inputs)  # (B, T, V) fp32
                        logp = token_logprobs(logits, batch.targets)  # (B, T)
                        if update == 0:
                            old_logp[micro] = logp.detach()
                            reference_logp[micro], kl = self.reference_pass(batch, logits.detach())
                            kl_sum += kl
                        loss = grpo_loss(logp, old_logp[micro], batch.advantages, batch.mask, num_tokens,
                                         config.clip_eps, reference_logp[micro], config.kl_coef)  # fmt: skip
                        # DDP averages gradients over ranks; the loss is already a sum over the whole step
                        (loss * self.dist.world_size).backward()
                    loss_sum += loss.detach()
                self.optimizer_update()
            if self.dist.is_distributed:
                torch.distributed.all_reduce(loss_sum)
                kl_t = kl_sum.to(self.device)
                torch.distributed.all_reduce(kl_t)
                kl_sum = kl_t.cpu()
            self.tokens_per_step = int(stats[8])  # tokens/s in the progress line: sampled tokens trained
            self.flops_per_step = self.raw_model.flops_per_token() * self.tokens_per_step
            self.write_rl_metrics(stats, float(kl_sum) / num_tokens)
            return float(loss_sum) / config.updates_per_batch

        def reference_pass(self, batch: Rollouts, logits: Tensor) -> tuple[Tensor | None, float]:
            """log π_ref of the sampled tokens (when the KL penalty needs it) and Σ over masked-in tokens of
            the exact per-token KL(π_θ ‖ π_ref), computed over the whole vocabulary for the log."""
            from picochat.runtime import autocast

            with torch.no_grad(), autocast(self.device, self.dtype):
                ref_logits = self.reference(batch.inputs)  # (B, T, V)
            ref_all = log_softmax(ref_logits.float())
            kl = kl_divergence(log_softmax(logits.float()), ref_all)  # (B, T)
            ref_logp = ref_all.gather(-1, batch.targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return (ref_logp if self.rl.kl_coef else None), float((kl * batch.mask).sum())

        def optimizer_update(self) -> None:
            """Clip, set the scheduled learning rate and Muon momentum, step, zero the gradients."""
            from picochat.schedule import lr_multiplier, muon_momentum

            if self.s.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.s.grad_clip)
            factor = lr_multiplier(self.step, self.total_steps or 10**9, self.s.schedule, self.s.warmup_steps,
                                   self.s.warmdown_frac, self.s.final_lr_frac)  # fmt: skip
            self.optimizer.set_lr_multiplier(factor)
            for group in self.optimizer.param_groups:
                if group.get("name") == "matrices":
                    group["momentum"] = muon_momentum(self.step)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.lr_factor = factor

        def write_rl_metrics(self, stats: Tensor, kl: float) -> None:
            samples, r_sum, r_sq, correct, groups, any_correct, reply_tokens, tool_calls, _ = stats.tolist()
            mean = r_sum / samples
            record = {
                "step": self.step + 1, "reward_mean": mean, "reward_std": math.sqrt(max(r_sq / samples - mean**2, 0.0)),
                "pass_at_1": correct / samples, "pass_at_g": any_correct / groups, "kl": kl,
                "completion_len": reply_tokens / samples, "tool_calls": tool_calls / samples,
            }  # fmt: skip
            self.log.write(record)
            if (self.step + 1) % self.s.log_every == 0 or self.step == 0:
                self.message(f"step {self.step + 1}: reward {mean:.3f} | pass@1 {record['pass_at_1']:.3f} | "
                             f"pass@{self.rl.group_size} {record['pass_at_g']:.3f} | kl {kl:.4f} | "
                             f"reply {record['completion_len']:.1f} tokens, {record['tool_calls']:.2f} tool calls")  # fmt: skip

    return GRPOTrainer


# ---- the stage -----------------------------------------------------------------------------------------


def rl(config: RLConfig, eval_only: bool = False) -> dict:
    """Improve a chat checkpoint by GRPO on checkable tasks; returns the final held-out evaluation."""
    from picochat.checkpoint import latest_checkpoint, load_model
    from picochat.engine import Engine
    from picochat.optim import build_optimizer
    from picochat.runtime import compute_dtype, init_distributed, seed_everything
    from picochat.tasks.checkable import parse_task_mix

    check_config(config)
    dist_info, device = init_distributed(config.device)
    dtype = compute_dtype(device, config.dtype)
    seed_everything(config.seed)
    model, tokenizer, base_meta = load_model(config.base, device)
    mix = parse_task_mix(config.tasks, seed=config.seed)
    tool = None if config.tool == "none" else config.tool

    def evaluate(m) -> dict:
        return evaluate_held_out(m, tokenizer, mix, config.eval_problems, config.max_new_tokens, tool,
                                 dist_info.rank, dist_info.world_size)  # fmt: skip

    if eval_only:
        result = evaluate(model)
        if dist_info.is_main:
            print(format_evaluation(result), flush=True)
        return result

    rows_per_step = config.prompts_per_step * config.group_size
    per_micro = config.device_batch * dist_info.world_size
    if rows_per_step % per_micro:
        raise UserError(
            f"--prompts-per-step × --group-size = {rows_per_step} replies is not a multiple of device_batch × "
            f"world_size = {config.device_batch} × {dist_info.world_size}; pick a multiple of {per_micro}"
        )
    grad_accum = rows_per_step // per_micro
    virtual_world = dist_info.world_size * grad_accum
    sources = [ProblemStream(mix, config.device_batch // config.group_size, dist_info.rank * grad_accum + m,
                             virtual_world) for m in range(grad_accum)]  # fmt: skip
    reference, _, _ = load_model(config.base, device)  # frozen: the KL penalty's π_ref
    reference.requires_grad_(False)
    model.train()
    optimizer = build_optimizer(
        model,
        config.embedding_lr * config.lr_frac,
        config.head_lr * config.lr_frac,
        config.matrix_lr * config.lr_frac,
        config.weight_decay,
    )
    engine = Engine(model, tokenizer, tool=tool, dtype=None if device.type == "cpu" else config.dtype)
    fresh = config.resume == "never" or (
        config.resume == "auto" and latest_checkpoint(config.run_dir) is None
    )
    if fresh and config.eval_before and not config.restart_schedule:
        before = evaluate(model)
        if dist_info.is_main:
            print(f"before RL: {format_evaluation(before)}", flush=True)
            write_before(Path(config.run_dir), before)
    trainer = build_trainer(config, model, optimizer, sources, device, dtype, dist_info, tokenizer, evaluate,
                            base_meta)  # fmt: skip
    trainer.setup_rl(config, engine, reference, tokenizer.bos_id)
    if dist_info.is_main:
        print(f"RL (GRPO) from {config.base} (step {base_meta['step']}): tasks {config.tasks}; "
              f"{config.prompts_per_step} problems × {config.group_size} replies per step, "
              f"{grad_accum} micro-step(s) of {config.device_batch} rows; kl_coef {config.kl_coef}", flush=True)  # fmt: skip
    return trainer.fit()


def build_trainer(config: RLConfig, model, optimizer, sources, device, dtype, dist_info, tokenizer, evaluate,
                  base_meta):  # fmt: skip
    """The wiring to the shared training loop, in one place."""
    from picochat.training import LoopSettings, Trainer

    recorded = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    settings = LoopSettings.from_config(config, run_dir=Path(config.run_dir), total_steps=config.steps,
                                        extra={"config": recorded})  # fmt: skip
    fingerprint = {
        "stage": "rl", "tasks": config.tasks, "seed": config.seed, "prompts_per_step": config.prompts_per_step,
        "group_size": config.group_size, "max_new_tokens": config.max_new_tokens, "kl_coef": config.kl_coef,
        "updates_per_batch": config.updates_per_batch, "temperature": config.temperature,
        "device_batch": config.device_batch, "steps": config.steps, "base_step": base_meta["step"],
    }  # fmt: skip
    nominal_tokens = config.prompts_per_step * config.group_size * config.max_new_tokens
    return make_grpo_trainer(Trainer)(model, optimizer, sources, settings, device, dtype, dist_info,
                                      nominal_tokens, evaluate=evaluate, tokenizer=tokenizer,
                                      fingerprint=fingerprint)  # fmt: skip


def check_config(config: RLConfig) -> None:
    """Reject settings that cannot work, naming the flag."""
    if config.group_size < 2:
        raise UserError(
            f"--group-size must be at least 2 (advantages compare replies), got {config.group_size}"
        )
    if config.device_batch < config.group_size or config.device_batch % config.group_size:
        raise UserError(
            f"--device-batch {config.device_batch} must be a multiple of --group-size {config.group_size}: a "
            "micro-batch holds whole groups"
        )
    if config.prompts_per_step < 1 or config.max_new_tokens < 1 or config.updates_per_batch < 1:
        raise UserError("--prompts-per-step, --max-new-tokens and --updates-per-batch must be at least 1")
    if config.kl_coef < 0 or not 0 < config.clip_eps < 1:
        raise UserError(
            f"--kl-coef must be >= 0 and --clip-eps in (0, 1); got {config.kl_coef}, {config.clip_eps}"
        )


def format_evaluation(result: dict) -> str:
    tasks = ", ".join(f"{k.removesuffix('_pass_at_1')} {v:.3f}" for k, v in result.items()
                      if k.endswith("_pass_at_1") and k != "pass_at_1")  # fmt: skip
    return (f"held-out pass@1 {result['pass_at_1']:.3f} ± {result['pass_at_1_stderr']:.3f} "
            f"over {result['problems']} problems ({tasks})")  # fmt: skip


def write_before(run_dir: Path, result: dict) -> None:
    """The starting model's evaluation, as a step-0 record of metrics.jsonl."""
    from picochat.progress import MetricsLog

    log = MetricsLog(run_dir / "metrics.jsonl")
    log.truncate_after(0)
    log.write({"step": 0, **{f"val_{k}": v for k, v in result.items()}})
    log.close()
