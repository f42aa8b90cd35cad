"""Exact (Clopper-Pearson) binomial bounds for a rate measured on n wafers, and the per-slice gate rule.

Plain functions (scipy only, no TensorFlow): the TFMA metrics in :mod:`components.recall_bounds`,
the evaluation summary, and the data sizing use them.

A recall measured on n defective wafers with k misses (x = n - k caught) has sampling error. The
Clopper-Pearson bounds invert the binomial test exactly, so they never claim more than the data
show, even at zero misses:

- one-sided lower bound at confidence c: the (1 - c) quantile of Beta(x, n - x + 1); 0 when x = 0.
  With zero misses it is (1 - c) ** (1 / n): 0.05 ** (1 / 299) = 0.99003, so a recall can be
  claimed >= 0.99 with 95% confidence only from n = 299 defective wafers with no miss
  (:func:`defects_needed`).
- one-sided upper bound: the c quantile of Beta(x + 1, n - x); 1 when x = n.
- two-sided interval at level c: the (1 - c) / 2 and (1 + c) / 2 quantiles of the same Betas.

With n = 0 nothing is known: the bounds are 0 and 1 (never NaN, so a gate on them fails honestly).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

from scipy.stats import beta

#: The policies for a gated slice with fewer defective wafers than the minimum support.
TOO_FEW_REPORT = "report"  # not gated, but listed as "too few to judge" in the summary and the report
TOO_FEW_REFUSE = "refuse"  # refuses the blessing
TOO_FEW_POLICIES: Tuple[str, ...] = (TOO_FEW_REPORT, TOO_FEW_REFUSE)

#: The rules that decide a gated slice (the summary and the report name them).
RULE_LOWER_BOUND = "lower bound"
RULE_POINT = "point estimate"
RULE_TOO_FEW = "too few to judge"

#: Verdicts of a gated slice.
VERDICT_PASS = "pass"
VERDICT_FAIL = "fail"
VERDICT_TOO_FEW = "too few to judge"


def _check(successes: float, n: float, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n; got successes={successes!r}, n={n!r}")


def lower_bound(successes: float, n: float, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound of the rate successes / n at ``confidence``."""
    _check(successes, n, confidence)
    if successes <= 0:
        return 0.0
    return float(beta.ppf(1.0 - confidence, successes, n - successes + 1))


def upper_bound(successes: float, n: float, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of the rate successes / n at ``confidence``."""
    _check(successes, n, confidence)
    if successes >= n:
        return 1.0
    return float(beta.ppf(confidence, successes + 1, n - successes))


def interval(successes: float, n: float, confidence: float = 0.95) -> Tuple[float, float]:
    """Two-sided Clopper-Pearson interval (low, high) of successes / n at level ``confidence``."""
    _check(successes, n, confidence)
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if successes <= 0 else float(beta.ppf(tail, successes, n - successes + 1))
    high = 1.0 if successes >= n else float(beta.ppf(1.0 - tail, successes + 1, n - successes))
    return low, high


def defects_needed(min_recall: float, confidence: float = 0.95, misses: int = 0) -> int:
    """The smallest number of defective wafers n whose lower bound with ``misses`` misses is >= min_recall.

    ``defects_needed(0.99, 0.95, m)`` for m = 0, 1, 2, 3 misses: 299, 473, 628, 773 defective wafers.
    """
    if not 0.0 <= min_recall < 1.0:
        raise ValueError(f"min_recall must be in [0, 1) (no finite test set shows a recall of 1); got {min_recall!r}")
    if misses < 0 or int(misses) != misses:
        raise ValueError(f"misses must be a whole number >= 0; got {misses!r}")
    misses = int(misses)
    _check(0, 0, confidence)

    def enough(n: int) -> bool:
        return lower_bound(n - misses, n, confidence) >= min_recall

    low = max(1, misses)
    if enough(low):
        return low
    high = max(2 * low, 16)
    while not enough(high):  # the bound rises with n towards 1 > min_recall: this ends
        low, high = high, 2 * high
    while high - low > 1:  # invariant: not enough(low), enough(high)
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high


def check_policy(min_support: int, too_few: str) -> None:
    """Raises ValueError for a minimum support below 1 or an unknown too-few policy."""
    if int(min_support) != min_support or min_support < 1:
        raise ValueError(f"min_slice_support must be a whole number >= 1; got {min_support!r}")
    if too_few not in TOO_FEW_POLICIES:
        raise ValueError(f"too_few must be one of {list(TOO_FEW_POLICIES)}; got {too_few!r}")


def gate_value(caught: float, support: float, min_support: int, too_few: str = TOO_FEW_REPORT) -> float:
    """The number a per-slice recall threshold is checked against.

    The rule: with at least ``min_support`` defective wafers, the point recall caught / support;
    with fewer, 1.0 under "report" (the slice cannot fail the gate, and the summary lists it as
    too few to judge) or 0.0 under "refuse" (it fails every recall threshold, so the model is not
    blessed). Never NaN, so TFMA's validator can always check it.
    """
    check_policy(min_support, too_few)
    if support >= min_support:
        return float(caught) / float(support)
    return 1.0 if too_few == TOO_FEW_REPORT else 0.0


def slice_rule(support: Optional[float], min_support: int) -> str:
    """The rule that decides a gated (non-overall) slice: "point estimate (n >= 30)" or "too few to judge (n < 30)"."""
    if support is not None and not math.isnan(support) and support >= min_support:
        return f"{RULE_POINT} (n >= {min_support})"
    return f"{RULE_TOO_FEW} (n < {min_support})"


__all__ = [
    "TOO_FEW_REPORT",
    "TOO_FEW_REFUSE",
    "TOO_FEW_POLICIES",
    "RULE_LOWER_BOUND",
    "RULE_POINT",
    "RULE_TOO_FEW",
    "VERDICT_PASS",
    "VERDICT_FAIL",
    "VERDICT_TOO_FEW",
    "lower_bound",
    "upper_bound",
    "interval",
    "defects_needed",
    "check_policy",
    "gate_value",
    "slice_rule",
]
