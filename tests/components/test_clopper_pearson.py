"""Exact binomial bounds against a direct computation, the sizing helper, and the per-slice gate rule."""

import math

import pytest
from scipy.stats import beta, binom

from components import clopper_pearson as cp


@pytest.mark.parametrize("n", [1, 10, 298, 299, 300, 1000])
def test_lower_bound_at_zero_misses_is_the_closed_form(n):
    assert cp.lower_bound(n, n, 0.95) == pytest.approx(0.05 ** (1 / n), rel=1e-12)


def test_zero_misses_reach_099_only_from_299_defective_wafers():
    assert cp.lower_bound(299, 299, 0.95) >= 0.99
    assert cp.lower_bound(298, 298, 0.95) < 0.99
    assert cp.defects_needed(0.99, 0.95, 0) == 299
    assert cp.defects_needed(0.99, 0.95) == math.ceil(math.log(0.05) / math.log(0.99))


@pytest.mark.parametrize("misses", [0, 1, 2, 5])
def test_defects_needed_is_the_smallest_n(misses):
    n = cp.defects_needed(0.99, 0.95, misses)
    assert cp.lower_bound(n - misses, n, 0.95) >= 0.99
    assert cp.lower_bound(n - 1 - misses, n - 1, 0.95) < 0.99
    assert cp.defects_needed(0.95, 0.95, misses) < n  # a lower target needs fewer wafers


@pytest.mark.parametrize("caught, n", [(199, 200), (98, 100), (5, 5), (0, 7), (13, 40)])
def test_bounds_equal_the_beta_quantiles(caught, n):
    expected_lower = 0.0 if caught == 0 else beta.ppf(0.05, caught, n - caught + 1)
    expected_upper = 1.0 if caught == n else beta.ppf(0.95, caught + 1, n - caught)
    assert cp.lower_bound(caught, n, 0.95) == pytest.approx(expected_lower, abs=1e-12)
    assert cp.upper_bound(caught, n, 0.95) == pytest.approx(expected_upper, abs=1e-12)
    low, high = cp.interval(caught, n, 0.95)
    assert low == pytest.approx(0.0 if caught == 0 else beta.ppf(0.025, caught, n - caught + 1), abs=1e-12)
    assert high == pytest.approx(1.0 if caught == n else beta.ppf(0.975, caught + 1, n - caught), abs=1e-12)
    assert low <= caught / n <= high


def test_the_lower_bound_inverts_the_binomial_test():
    # At the bound p, seeing >= caught successes of n has probability exactly 1 - confidence.
    caught, n = 199, 200
    p = cp.lower_bound(caught, n, 0.95)
    assert binom.sf(caught - 1, n, p) == pytest.approx(0.05, rel=1e-6)
    assert p < 0.99 < caught / n  # the point estimate passes 0.99, the bound does not


def test_nothing_known_without_wafers():
    assert cp.lower_bound(0, 0) == 0.0 and cp.upper_bound(0, 0) == 1.0 and cp.interval(0, 0) == (0.0, 1.0)


def test_gate_value_rule():
    assert cp.gate_value(29, 30, 30, "report") == pytest.approx(29 / 30)  # judged on the point estimate
    assert cp.gate_value(29, 29, 30, "report") == 1.0  # too few: not gated
    assert cp.gate_value(29, 29, 30, "refuse") == 0.0  # too few: refuses
    assert cp.gate_value(0, 0, 30, "report") == 1.0 and cp.gate_value(0, 0, 30, "refuse") == 0.0
    assert cp.slice_rule(30, 30) == "point estimate (n >= 30)"
    assert cp.slice_rule(29, 30) == "too few to judge (n < 30)" and cp.slice_rule(None, 30).startswith("too few")


def test_errors():
    with pytest.raises(ValueError, match="min_recall must be in"):
        cp.defects_needed(1.0)
    with pytest.raises(ValueError, match="confidence must be in"):
        cp.lower_bound(1, 2, 1.5)
    with pytest.raises(ValueError, match="successes <= n"):
        cp.interval(3, 2)
    with pytest.raises(ValueError, match="too_few must be one of"):
        cp.gate_value(1, 1, 30, "ignore")
