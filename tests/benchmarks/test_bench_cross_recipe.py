"""The cross-recipe benchmark's threshold-free comparison and its argument checks (the scoring itself
runs through a served model in the benchmark)."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_cross_recipe")


def test_missed_at_false_alarms_sets_the_threshold_on_the_normal_wafers(bench):
    normal = np.arange(100) / 100  # P(normal) 0.00 ... 0.99
    defective = np.arange(1, 11) * 0.02  # 0.02 ... 0.20
    scores = np.concatenate([normal, defective])
    is_defect = np.array([False] * 100 + [True] * 10)
    missed = bench.missed_at_false_alarms(scores, is_defect)
    # 3 %: t = 0.03 flags 3 normal wafers and one defect (0.02); 10 %: t = 0.10 flags four defects.
    assert missed == {"0.03": 9, "0.05": 8, "0.10": 6}
    assert bench.missed_at_false_alarms(scores[:100], is_defect[:100]) == {}  # no defects: nothing to count


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--fresh-count", "-1"], "--fresh-count must be 0 or more, got -1"),
        (["--count", "3"], "--count must be at least 9"),
    ],
)
def test_bad_counts_are_refused_with_one_line(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err
