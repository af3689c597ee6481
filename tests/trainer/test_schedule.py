"""The run schedule: progress by steps or clock, warm-up times cosine, progressive resizing, resume."""

import pytest

from trainer.schedule import RAMP_END, TrainingSchedule


def _plans(schedule: TrainingSchedule) -> list:
    plans = []
    while (plan := schedule.next_step()) is not None:
        plans.append(plan)
    return plans


def test_warm_up_then_cosine_to_the_floor_in_the_planned_steps() -> None:
    plans = _plans(TrainingSchedule(total_steps=20, warmup_steps=4, image_size=96))
    rates = [plan.lr_factor for plan in plans]
    assert len(plans) == 20
    # the warm-up multiplies the cosine, which has barely moved in four of twenty steps
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0], rel=0.06)
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False))
    assert rates[-1] == pytest.approx(0.01, abs=0.01)
    assert {plan.image_side for plan in plans} == {96}  # progressive resizing off by default


def test_progressive_resizing_grows_in_stride_multiples_and_ends_at_full_size() -> None:
    plans = _plans(TrainingSchedule(total_steps=100, warmup_steps=0, image_size=96, start_ratio=0.67, multiple=16))
    sides = [plan.image_side for plan in plans]
    assert sides[0] == 64 and sides == sorted(sides) and set(sides) == {64, 80, 96}
    assert all(side == 96 for side in sides[int(100 * RAMP_END) :])  # the last quarter at the model's size
    assert sides.count(64) > 30  # the cheap start is a real share of the steps


def test_a_time_budget_ends_the_run_on_the_clock() -> None:
    now = [100.0]
    schedule = TrainingSchedule(
        total_steps=10_000, warmup_steps=0, image_size=64, start_ratio=0.5, budget_s=30, clock=lambda: now[0]
    )
    plans = []
    while (plan := schedule.next_step()) is not None:
        plans.append(plan)
        now[0] += 1.0  # each step takes a second
    assert len(plans) == 30 and schedule.over() and schedule.elapsed_s == 30
    # the schedule ran on the clock: the rate reached its floor and the input its full size by the end
    assert plans[0].image_side == 32 and plans[-1].image_side == 64 and plans[-1].lr_factor < 0.05


def test_the_state_round_trip_continues_steps_and_clock() -> None:
    now = [0.0]
    schedule = TrainingSchedule(total_steps=10, warmup_steps=2, image_size=96, budget_s=8, clock=lambda: now[0])
    for _ in range(4):
        schedule.next_step()
        now[0] += 1.0
    state = schedule.state_dict()
    assert state == {"steps": 4, "elapsed_s": 4.0}
    now[0] = 1000.0  # a later session: the time between sessions does not count
    resumed = TrainingSchedule(total_steps=10, warmup_steps=2, image_size=96, budget_s=8, clock=lambda: now[0])
    resumed.load_state_dict(state)
    plans = []
    while (plan := resumed.next_step()) is not None:
        plans.append(plan)
        now[0] += 1.0
    assert len(plans) == 4 and resumed.elapsed_s == 8.0  # the clock, not the 6 steps left, ends it


def test_every_process_follows_the_agreed_progress() -> None:
    # under torchrun the furthest rank's progress wins (here one whose clock is half a run ahead), so every
    # rank takes the same rates and sides and stops at the same step
    schedule = TrainingSchedule(total_steps=100, warmup_steps=0, image_size=96, agree=lambda p: p + 0.5)
    plans = _plans(schedule)
    assert len(plans) == 50 and plans[0].lr_factor == pytest.approx(0.505)
