"""The defect flag's operating threshold and the score TFMA's Recall reads."""

import numpy as np
import pytest

from components.operating_point import MIN_THRESHOLD, choose_threshold, defect_score, rates


def test_smallest_threshold_reaching_the_target():
    # Ten defects: P(normal) 0.0 ... 0.9; target 0.9 needs 9 flagged -> t just above 0.8.
    p_defect = np.linspace(0.0, 0.9, 10)
    p_normal_wafers = np.array([0.97, 0.99, 0.995])
    p = np.concatenate([p_defect, p_normal_wafers])
    is_defect = np.array([True] * 10 + [False] * 3)
    point = choose_threshold(p, is_defect, target_recall=0.9, max_threshold=0.96)
    assert 0.8 < point.threshold < 0.8 + 1e-9
    assert point.defect_recall == pytest.approx(0.9) and point.target_reached
    assert point.false_alarm_rate == 0.0 and (point.defects, point.normals) == (10, 3)


def test_threshold_never_below_half_and_never_above_the_ceiling():
    easy = choose_threshold(np.array([0.01, 0.02, 0.99]), np.array([True, True, False]), 0.99, 0.95)
    assert easy.threshold == MIN_THRESHOLD and easy.defect_recall == 1.0
    # A model that calls defects normal cannot reach the target without flagging everything.
    hard = choose_threshold(np.array([0.99, 0.98, 0.97, 0.99]), np.array([True, True, True, False]), 0.99, 0.95)
    assert hard.threshold == 0.95 and hard.defect_recall == 0.0 and not hard.target_reached
    assert (easy.limited_by, hard.limited_by) == ("floor", "ceiling")


def test_the_false_alarm_budget_lowers_the_threshold():
    # 100 normal wafers with P(normal) 0.50, 0.505, ... 0.995; defects at 0.2 and 0.9.
    normals = 0.5 + 0.005 * np.arange(100)
    p = np.concatenate([normals, [0.2, 0.9]])
    is_defect = np.array([False] * 100 + [True, True])
    free = choose_threshold(p, is_defect, 1.0, 0.95)
    assert (
        free.defect_recall == 1.0
        and free.false_alarm_rate == pytest.approx(0.81)
        and free.limited_by == "target recall"
    )
    budget = choose_threshold(p, is_defect, 1.0, 0.95, max_false_alarm_rate=0.1)
    assert budget.threshold == pytest.approx(0.55) and budget.false_alarm_rate == pytest.approx(0.10)
    assert budget.defect_recall == 0.5 and not budget.target_reached and budget.limited_by == "false-alarm budget"
    # A budget the target fits in changes nothing.
    assert choose_threshold(p, is_defect, 0.5, 0.95, max_false_alarm_rate=0.1).limited_by == "floor"


def test_defect_score_crosses_one_half_exactly_at_the_threshold():
    t = 0.7
    p = np.array([0.0, 0.3, 0.69, 0.7, 0.71, 1.0])
    score = defect_score(p, t)
    assert np.all((score > 0.5) == (p < t))
    assert score[0] == 1.0 and np.all(np.diff(score) <= 0)


def test_rates_are_direct_counts():
    p = np.array([0.1, 0.6, 0.4, 0.9, 0.2])
    is_defect = np.array([True, True, True, False, False])
    assert rates(p, is_defect, 0.5) == {"defect_recall": pytest.approx(2 / 3), "false_alarm_rate": 0.5}


def test_bad_shapes():
    with pytest.raises(ValueError, match="1-D of one length"):
        choose_threshold(np.zeros(3), np.zeros(2, bool), 0.99, 0.9)
