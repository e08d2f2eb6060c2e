"""Learning-rate schedules: the paper's plateau rule, Caffe's step, cosine, warm-up, state round trip."""

import math

import pytest

from alexnet.errors import BadOptionError
from alexnet.training.schedule import (
    CosineSchedule,
    PlateauSchedule,
    Schedule,
    StepSchedule,
    build_schedule,
)


def test_plateau_divides_by_ten_after_patience_epochs_at_most_three_times():
    s = PlateauSchedule(0.01, patience=2, max_reductions=3)
    errors = [0.9, 0.8, 0.8, 0.85,   # 2 epochs without a new best -> 0.001
              0.7, 0.75, 0.71,       # -> 0.0001
              0.72, 0.73,            # -> 0.00001
              0.9, 0.9, 0.9, 0.9]    # no fourth reduction
    lrs = []
    for e in errors:
        s.end_epoch(e)
        lrs.append(s.lr(0))
    assert lrs[:4] == pytest.approx([0.01, 0.01, 0.01, 0.001])
    assert lrs[4:7] == pytest.approx([0.001, 0.001, 1e-4])
    assert lrs[7:9] == pytest.approx([1e-4, 1e-5])
    assert lrs[-1] == pytest.approx(1e-5) and s.reductions == 3


def test_plateau_state_round_trip_and_nan_ignored():
    s = PlateauSchedule(0.1, patience=1)
    s.end_epoch(0.5)
    s.end_epoch(float("nan"))
    assert s.lr(0) == 0.1
    s.end_epoch(0.6)
    t = PlateauSchedule(0.1, patience=1)
    t.load_state_dict(s.state_dict())
    assert t.lr(0) == pytest.approx(0.01) and t.best == 0.5


def test_step_is_caffes():
    s = StepSchedule(0.01, step_size=100)
    assert [s.lr(k) for k in (0, 99, 100, 250)] == pytest.approx([0.01, 0.01, 0.001, 0.0001])
    with pytest.raises(BadOptionError):
        StepSchedule(0.01, step_size=0)


def test_cosine_and_warmup():
    s = CosineSchedule(0.1, total_steps=100, min_lr=0.0)
    assert s.lr(0) == pytest.approx(0.1)
    assert s.lr(50) == pytest.approx(0.05)
    assert s.lr(100) == pytest.approx(0.0, abs=1e-12)
    w = Schedule(0.1, warmup_steps=4)
    assert [w.lr(k) for k in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert all(math.isfinite(s.lr(k)) for k in range(200))


def test_build_schedule_names():
    for name in ("plateau", "step", "cosine", "constant"):
        assert build_schedule(name, base_lr=0.01, total_steps=10).lr(0) == pytest.approx(0.01)
    with pytest.raises(BadOptionError, match="unknown schedule"):
        build_schedule("linear", base_lr=0.01, total_steps=10)


def test_plateau_does_not_cut_the_lr_of_a_run_still_at_chance():
    # 10 classes: chance is 0.9. A run stuck there keeps its lr however long it waits (the paper's rule
    # is about a run that *stopped* improving; this one never started) ...
    s = PlateauSchedule(0.01, patience=2, chance_err=0.9)
    for e in [0.9, 0.9, 0.91, 0.9, 0.895, 0.9, 0.9]:
        s.end_epoch(e)
    assert s.lr(0) == pytest.approx(0.01) and s.reductions == 0 and not s.left_chance()
    # ... and once it has learned something, the paper's rule applies as before.
    for e in [0.6, 0.62, 0.61]:
        s.end_epoch(e)
    assert s.left_chance() and s.reductions == 1 and s.lr(0) == pytest.approx(0.001)
    # Without a known chance level (the default), every epoch without a new best counts.
    t = PlateauSchedule(0.01, patience=2)
    for e in [0.9, 0.9, 0.9]:
        t.end_epoch(e)
    assert t.reductions == 1
