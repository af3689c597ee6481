"""The run schedule: progress by steps or clock, warm-up times cosine, progressive resizing, resume."""

import time

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
    schedule = TrainingSchedule(total_steps=10_000, warmup_steps=0, image_size=64, start_ratio=0.5, budget_s=0.3)
    started = time.monotonic()
    plans = []
    while (plan := schedule.next_step()) is not None:
        plans.append(plan)
        time.sleep(0.01)  # a step's work
    took = time.monotonic() - started
    assert 0.3 <= took < 0.6 and schedule.over()
    assert 5 < len(plans) < 10_000
    # the schedule ran on the clock: the rate reached its floor and the input its full size at the end
    assert plans[-1].lr_factor < 0.05 and plans[-1].image_side == 64 and plans[0].image_side == 32


def test_the_state_round_trip_continues_steps_and_clock() -> None:
    schedule = TrainingSchedule(total_steps=10, warmup_steps=2, image_size=96, budget_s=3600)
    for _ in range(4):
        schedule.next_step()
    state = schedule.state_dict()
    assert state["steps"] == 4 and state["elapsed_s"] > 0
    resumed = TrainingSchedule(total_steps=10, warmup_steps=2, image_size=96, budget_s=3600)
    resumed.load_state_dict(state)
    assert len(_plans(resumed)) == 6 and resumed.elapsed_s >= state["elapsed_s"]


def test_every_process_follows_the_agreed_progress() -> None:
    # under torchrun the furthest rank's progress wins (here one whose clock is half a run ahead), so every
    # rank takes the same rates and sides and stops at the same step
    schedule = TrainingSchedule(total_steps=100, warmup_steps=0, image_size=96, agree=lambda p: p + 0.5)
    plans = _plans(schedule)
    assert len(plans) == 50 and plans[0].lr_factor == pytest.approx(0.505)
