"""The defect flag's operating threshold and the score TFMA's Recall reads."""

import numpy as np
import pytest

from components.operating_point import MIN_THRESHOLD, choose_threshold, defect_score, rates


def test_the_ceiling_when_the_budget_allows_it():
    # Ten defects: P(normal) 0.0 ... 0.9; normal wafers all above the ceiling: t is the ceiling, all flagged.
    p_defect = np.linspace(0.0, 0.9, 10)
    p_normal_wafers = np.array([0.97, 0.99, 0.995])
    p = np.concatenate([p_defect, p_normal_wafers])
    is_defect = np.array([True] * 10 + [False] * 3)
    point = choose_threshold(p, is_defect, target_recall=0.9, max_threshold=0.96)
    assert point.threshold == 0.96 and point.limited_by == "ceiling"
    assert point.defect_recall == 1.0 and point.target_reached
    assert point.false_alarm_rate == 0.0 and (point.defects, point.normals) == (10, 3)


def test_recall_first_spends_the_budget_even_when_a_lower_threshold_reaches_the_target():
    # Defects at 0.01 and 0.02 reach any target at t = 0.5, but a wafer of the test split like the third
    # defect (0.9) would be missed there: the budget's t (the 11th lowest normal, 0.55) is kept.
    normals = 0.5 + 0.005 * np.arange(100)
    p = np.concatenate([normals, [0.01, 0.02]])
    is_defect = np.array([False] * 100 + [True, True])
    point = choose_threshold(p, is_defect, 0.99, 0.95, max_false_alarm_rate=0.1)
    assert point.threshold == pytest.approx(0.55) and point.false_alarm_rate == pytest.approx(0.10)
    assert point.limited_by == "false-alarm budget" and point.target_reached


def test_threshold_never_below_half_and_never_above_the_ceiling():
    # Every normal wafer below 0.5: the budget would put t under the floor.
    low = choose_threshold(np.array([0.01, 0.2, 0.3]), np.array([True, False, False]), 0.99, 0.95, 0.0)
    assert low.threshold == MIN_THRESHOLD and low.limited_by == "floor" and low.false_alarm_rate == 1.0
    # A model that calls defects normal does not reach the target at the ceiling: reported, not hidden.
    hard = choose_threshold(np.array([0.99, 0.98, 0.97, 0.99]), np.array([True, True, True, False]), 0.99, 0.95)
    assert hard.threshold == 0.95 and hard.defect_recall == 0.0 and not hard.target_reached
    assert hard.limited_by == "ceiling"


def test_the_false_alarm_budget_lowers_the_threshold():
    # 100 normal wafers with P(normal) 0.50, 0.505, ... 0.995; defects at 0.2 and 0.9.
    normals = 0.5 + 0.005 * np.arange(100)
    p = np.concatenate([normals, [0.2, 0.9]])
    is_defect = np.array([False] * 100 + [True, True])
    free = choose_threshold(p, is_defect, 1.0, 0.95)
    assert free.threshold == 0.95 and free.defect_recall == 1.0 and free.false_alarm_rate == pytest.approx(0.90)
    budget = choose_threshold(p, is_defect, 1.0, 0.95, max_false_alarm_rate=0.1)
    assert budget.threshold == pytest.approx(0.55) and budget.false_alarm_rate == pytest.approx(0.10)
    assert budget.defect_recall == 0.5 and not budget.target_reached and budget.limited_by == "false-alarm budget"
    # Ties at the budget's edge flag fewer normal wafers, never more.
    tied = choose_threshold(np.array([0.6, 0.6, 0.6, 0.9, 0.1]), np.array([False] * 4 + [True]), 1.0, 0.95, 0.5)
    assert tied.threshold == 0.6 and tied.false_alarm_rate == 0.0


def test_no_defects_or_no_normals():
    only_normal = choose_threshold(np.array([0.7, 0.9]), np.array([False, False]), 0.99, 0.95)
    assert only_normal.target_reached and np.isnan(only_normal.defect_recall)
    only_defect = choose_threshold(np.array([0.7, 0.9]), np.array([True, True]), 0.99, 0.95, 0.05)
    assert only_defect.threshold == 0.95 and only_defect.defect_recall == 1.0


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
