"""pass@k, bootstrap CIs and paired differences."""

import itertools
import random

import pytest

from cgd.evaluation import stats


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 5, 3), (6, 2, 1), (6, 2, 3), (8, 3, 4), (4, 1, 4)])
def test_pass_at_k_is_the_probability_a_random_k_subset_has_a_correct_sample(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert stats.pass_at_k(n, c, k) == pytest.approx(brute)


def test_pass_at_1_is_the_fraction_correct_and_k_beyond_n_fails():
    assert stats.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="pass@5"):
        stats.pass_at_k(4, 1, 5)


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    rng = random.Random(0)
    scores = [float(rng.random() < 0.4) for _ in range(200)]
    a = stats.mean_ci(scores, 2000, seed=7)
    assert a == stats.mean_ci(scores, 2000, seed=7)
    assert a["ci_low"] < a["mean"] < a["ci_high"]
    # ~ +-1.96 * sqrt(p(1-p)/n) = +-6.8 points at n=200
    assert 4 < (a["ci_high"] - a["ci_low"]) / 2 < 10
    assert stats.mean_ci([1.0] * 5, 1000, 0) == {"n": 5, "mean": 100.0, "ci_low": 100.0, "ci_high": 100.0}
    assert stats.mean_ci([1.0], 1000, 0)["ci_low"] is None
    assert stats.mean_ci([], 1000, 0)["mean"] is None


def test_paired_difference_and_mcnemar():
    a = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0] * 3
    b = [0, 0, 0, 0, 0, 0, 1, 1, 0, 0] * 3
    d = stats.paired_difference(a, b, 2000, seed=1)
    assert d["diff"] == 60.0 and d["wins"] == 18 and d["losses"] == 0
    assert d["ci_low"] > 0 and d["p_value"] < 1e-4
    same = stats.paired_difference(a, a, 2000, seed=1)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_difference([1, 0], [1], 100, 0)


def test_a_group_average_weighs_benchmarks_equally_and_pools_mcnemar():
    big = ([1] * 10 + [0] * 90, [0] * 100)  # +10 points over 100 problems
    small = ([0] * 10, [1] * 2 + [0] * 8)  # -20 points over 10 problems
    g = stats.paired_group_difference({"gsm8k": big, "math500": small}, 2000, seed=1)
    assert g["diff"] == -5.0 and g["benchmarks"] == ["gsm8k", "math500"] and g["n"] == 110
    assert g["ci_low"] < -5.0 < g["ci_high"]
    assert (g["wins"], g["losses"]) == (10, 2) and 0.01 < g["p_value"] < 0.05  # binomial 10 of 12
    assert stats.paired_group_difference({"gsm8k": big}, 2000, seed=1) == \
        stats.paired_group_difference({"gsm8k": big}, 2000, seed=1)  # reproducible for a seed
    assert stats.paired_group_difference({}, 100, 0)["diff"] is None
