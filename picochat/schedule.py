"""Learning-rate schedules: pure functions of the step that return a multiplier of the base rates.

- "cosine": linear warmup, then cosine decay to `final_lr_frac` (the math document's schedule);
- "wsd" (the presets'): linear warmup, a plateau, then a linear warmdown over the last `warmdown_frac`
  of training to `final_lr_frac`; a run can be extended or cut without re-planning the whole curve.

`step` counts optimizer steps already taken; the warmup uses t = step + 1, so the first rate is not zero.
"""

from __future__ import annotations

import statistics

from picochat.equations import cosine_decay, linear_warmup

SCHEDULES = ("wsd", "cosine", "constant")


def lr_multiplier(
    step: int,
    total_steps: int,
    *,
    schedule: str,
    warmup_steps: int,
    warmdown_frac: float,
    final_lr_frac: float,
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


class TimeBudget:
    """A horizon that the wall clock decides: train for `budget_s` seconds, whatever the machine's pace.

    Warmup counts steps. Under "wsd" the plateau lasts until the budget's share 1 − warmdown_frac is spent;
    the decay's length follows from the recent pace and is re-planned from the current rate when the
    predicted end drifts by more than `TOLERANCE` of the budget. "cosine" and "constant" re-estimate the
    horizon from the start. The plan is in `state_dict`, so a resumed run follows the same schedule."""

    PACE_WINDOW = 10  # the pace is the median duration of this many recent steps
    TOLERANCE = 0.02  # re-plan the decay when the predicted end drifts by more than this share of the budget
    STATE = (
        "elapsed_s recent end_step decay_start decay_start_lr reserve_s reserve_measured".split()
    )  # what state_dict keeps

    def __init__(
        self, budget_s: float, *, schedule: str, warmup_steps: int, warmdown_frac: float, final_lr_frac: float
    ):
        if not budget_s > 0:
            raise ValueError(f"the time budget must be positive, got {budget_s}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        self.budget_s, self.schedule = float(budget_s), schedule
        self.warmup_steps, self.warmdown_frac, self.final_lr_frac = warmup_steps, warmdown_frac, final_lr_frac
        self.elapsed_s = 0.0
        self.recent: list[float] = []  # the last step durations (s)
        self.end_step: int | None = None  # known once the pace is (wsd: once the decay starts)
        self.decay_start: int | None = None
        self.decay_start_lr = 1.0
        self.reserve_s = 0.0  # time kept back for the work after the last step (final evaluation, save)
        self.reserve_measured = False  # True once reserve_s is the duration of a real evaluation rather than an estimate

    @property
    def pace(self) -> float | None:
        """Seconds per step: the median of the recent step durations (a noisy step does not move it)."""
        return statistics.median(self.recent) if self.recent else None

    def remaining_s(self) -> float:
        return self.budget_s - self.reserve_s - self.elapsed_s

    def observe(self, steps_done: int, duration_s: float) -> None:
        """Account for a finished step and re-plan; the first step's time counts, but not toward the pace."""
        self.elapsed_s += duration_s
        if steps_done == 1 and self.remaining_s() > 0:
            return
        self.recent = (self.recent + [duration_s])[-self.PACE_WINDOW :]
        pace = self.pace
        steps_left = max(1, round(self.remaining_s() / pace)) if self.remaining_s() > 0 else 0
        if self.schedule != "wsd":
            self.end_step = steps_done + steps_left
            return
        if self.decay_start is None:
            stable_until = (1.0 - self.warmdown_frac) * (self.budget_s - self.reserve_s)
            if self.elapsed_s < stable_until and steps_left > 0:
                self.end_step = None
                return
            self._plan_decay(steps_done, 1.0, steps_left)
            return
        predicted_end = self.elapsed_s + (self.end_step - steps_done) * pace
        drift = abs(predicted_end - (self.budget_s - self.reserve_s))
        if drift > self.TOLERANCE * self.budget_s:
            self._plan_decay(steps_done, self.lr_multiplier(steps_done), steps_left)

    def _plan_decay(self, step: int, start_lr: float, steps_left: int) -> None:
        self.decay_start, self.decay_start_lr, self.end_step = step, start_lr, step + steps_left

    def done(self, steps_done: int) -> bool:
        return self.end_step is not None and steps_done >= self.end_step

    def lr_multiplier(self, step: int) -> float:
        """The rate factor for optimizer step `step` (0-based), from what the plan has decided so far."""
        if step < self.warmup_steps:
            return linear_warmup(step + 1, self.warmup_steps, 1.0)
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "cosine":
            total = self.end_step if self.end_step is not None else 10**9
            decay_steps = max(1, max(total, step + 1) - self.warmup_steps)
            return cosine_decay(step - self.warmup_steps, decay_steps, 1.0, self.final_lr_frac)
        if self.decay_start is None:
            return 1.0
        span = max(1, self.end_step - self.decay_start)
        progress = min(1.0, (step - self.decay_start) / span)
        return self.decay_start_lr + (self.final_lr_frac - self.decay_start_lr) * progress

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, list(value) if key == "recent" else value)
