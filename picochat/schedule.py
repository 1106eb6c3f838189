"""Learning-rate schedules: pure functions of the step that return a multiplier of the base rates.

- "cosine": linear warmup, then cosine decay to `final_lr_frac` (the math document's schedule);
- "wsd": warmup–stable–decay: linear warmup, a constant plateau, then a linear warmdown over the last
  `warmdown_frac` of training to `final_lr_frac`. It lets a run be extended or cut without re-planning
  the whole curve, and it is what picochat's presets use.

Step numbering: `step` counts optimizer steps already taken (0 for the first update). The warmup uses
t = step + 1 so that the very first update already has a non-zero learning rate.
"""

from __future__ import annotations

from picochat.equations import cosine_decay, linear_warmup

SCHEDULES = ("wsd", "cosine", "constant")


def lr_multiplier(
    step: int,
    total_steps: int,
    schedule: str = "wsd",
    warmup_steps: int = 0,
    warmdown_frac: float = 0.4,
    final_lr_frac: float = 0.0,
) -> float:
    """The factor in [0, 1] by which every base learning rate is multiplied at optimizer step `step`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if step < warmup_steps:
        return linear_warmup(step + 1, warmup_steps, 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        decay_steps = max(1, total_steps - warmup_steps)
        return cosine_decay(step - warmup_steps, decay_steps, 1.0, final_lr_frac)
    warmdown_steps = round(warmdown_frac * total_steps)
    warmdown_start = total_steps - warmdown_steps
    if step < warmdown_start or warmdown_steps == 0:
        return 1.0
    progress = (step - warmdown_start) / warmdown_steps  # 0 → 1 over the warmdown
    return 1.0 + (final_lr_frac - 1.0) * min(1.0, progress)


def muon_momentum(step: int, warmup_steps: int = 300, start: float = 0.85, end: float = 0.95) -> float:
    """Muon's momentum ramps from `start` to `end` over the first steps: early gradients change fast."""
    frac = min(1.0, step / warmup_steps) if warmup_steps > 0 else 1.0
    return start + (end - start) * frac
