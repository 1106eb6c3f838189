"""The wall-clock time budget: the run ends within 5 % of its budget even when the pace changes mid-run."""

import pytest

from picochat.schedule import TimeBudget


def make_plan(
    seconds: float, schedule: str = "wsd", warmup_steps: int = 0, warmdown_frac: float = 0.4
) -> TimeBudget:
    return TimeBudget(
        seconds, schedule=schedule, warmup_steps=warmup_steps, warmdown_frac=warmdown_frac, final_lr_frac=0.0
    )


def simulate(plan: TimeBudget, step_time, max_steps: int = 10_000):
    """Run the plan against simulated step durations; returns (steps, elapsed, learning-rate factors)."""
    step, factors = 0, []
    while not plan.done(step) and step < max_steps:
        factors.append(plan.lr_multiplier(step))
        plan.observe(step + 1, step_time(step, plan.elapsed_s))
        step += 1
    return step, plan.elapsed_s, factors


def test_steady_pace_splits_stable_and_decay_as_asked():
    plan = make_plan(100.0, "wsd", warmup_steps=5, warmdown_frac=0.4)
    steps, elapsed, factors = simulate(plan, lambda step, t: 1.0)
    assert steps == 100 and elapsed == pytest.approx(100.0)
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(f == 1.0 for f in factors[5:60])  # stable for the first 60 % of the time
    assert plan.decay_start == 60 and factors[-1] < 0.03  # then a linear decay to 0


@pytest.mark.parametrize("slow_from, factor", [(30.0, 3.0), (70.0, 3.0), (50.0, 0.4), (85.0, 5.0)])
def test_a_machine_that_changes_pace_mid_run_still_ends_on_time(slow_from, factor):
    plan = make_plan(200.0, "wsd", warmup_steps=10, warmdown_frac=0.4)
    _, elapsed, factors = simulate(plan, lambda step, t: 1.0 if t < slow_from else factor)
    assert abs(elapsed - 200.0) <= 0.05 * 200.0
    # the rate never jumps: re-planning changes the slope of the decay, not its value
    assert max(abs(a - b) for a, b in zip(factors[10:], factors[11:])) < 0.15
    assert factors[-1] < 0.2


def test_the_old_fixed_horizon_would_overrun_the_same_slowdown():
    # the horizon fixed from the first steps' pace (what picochat did before) runs 2x over under this slowdown
    planned_steps = 200
    elapsed = sum(1.0 if step < 60 else 3.0 for step in range(planned_steps))
    assert elapsed > 1.5 * 200.0
    plan = make_plan(200.0, "wsd")
    _, elapsed, _ = simulate(plan, lambda step, t: 1.0 if step < 60 else 3.0)
    assert abs(elapsed - 200.0) <= 10.0


def test_the_first_step_compiles_its_time_counts_but_sets_no_pace():
    # SFT decays from its first step (warmdown 1.0); its first step compiles, ten times a later one
    plan = make_plan(100.0, "wsd", warmdown_frac=1.0)
    plan.observe(1, 10.0)
    assert plan.end_step is None and plan.elapsed_s == 10.0  # no plan from a compiling step
    plan.observe(2, 1.0)
    assert plan.end_step == 2 + 89  # 89 s left at the pace of the steps after it
    plan = make_plan(100.0, "wsd", warmdown_frac=1.0)
    steps, elapsed, factors = simulate(plan, lambda step, t: 10.0 if step == 0 else 1.0)
    assert steps == 91 and elapsed == pytest.approx(100.0)
    # one straight decay from the full rate: no early drop planned from the slow step's pace
    assert factors[:3] == [1.0, 1.0, 1.0]
    assert max(abs(a - b) for a, b in zip(factors, factors[1:])) <= 1 / 89 + 1e-9
    # a first step that spends the whole budget ends the run
    plan = make_plan(5.0, "wsd")
    plan.observe(1, 6.0)
    assert plan.done(1)


def test_cosine_and_constant_re_estimate_the_horizon():
    for schedule in ("cosine", "constant"):
        plan = make_plan(100.0, schedule, warmup_steps=0)
        _, elapsed, factors = simulate(plan, lambda step, t: 0.5 if t < 50 else 1.0)
        assert abs(elapsed - 100.0) <= 5.0
        assert (factors[-1] < 0.05) if schedule == "cosine" else all(f == 1.0 for f in factors)


def test_the_plan_resumes_exactly_from_its_state():
    durations = [1.0] * 40 + [2.0] * 200
    straight = make_plan(150.0, "wsd", warmup_steps=3)
    _, _, expected = simulate(straight, lambda step, t: durations[step])
    first = make_plan(150.0, "wsd", warmup_steps=3)
    for step in range(70):
        first.observe(step + 1, durations[step])
    resumed = make_plan(150.0, "wsd", warmup_steps=3)
    resumed.load_state_dict(first.state_dict())
    factors, step = [], 70
    while not resumed.done(step):
        factors.append(resumed.lr_multiplier(step))
        resumed.observe(step + 1, durations[step])
        step += 1
    assert factors == expected[70:]


def test_reserve_keeps_time_for_the_final_evaluation():
    plan = make_plan(100.0, "wsd")
    plan.reserve_s = 10.0
    _, elapsed, _ = simulate(plan, lambda step, t: 1.0)
    assert elapsed == pytest.approx(90.0)


@pytest.mark.parametrize("budget", [0.0, -1.0, float("nan")])
def test_a_budget_must_be_positive(budget):
    with pytest.raises(ValueError, match="positive"):
        make_plan(budget)
