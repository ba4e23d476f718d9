"""The intervals every evaluation reports: known values, and the coverage they promise."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from safecity.evaluation.stats import (block_bootstrap_auc, day_bootstrap_mae, poisson_interval,
                                       quantile_interval, wilson_interval)


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),    # no success: the upper bound still says "up to about a quarter"
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),  # Newcombe (1998), Table I style example
])
def test_wilson_interval_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_of_nothing_measured_is_undefined():
    assert all(np.isnan(wilson_interval(0, 0)))


def test_wilson_interval_covers_the_true_proportion_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    n, p = 30, 0.2
    ks = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson_interval(k, n) for k in ks)])
    assert 0.93 <= covered <= 0.97


@pytest.mark.parametrize("k, low, high", [
    (0, 0.0, 3.6889),   # the "rule of three": no event seen, up to about 3.7 expected
    (1, 0.0253, 5.5716),
    (5, 1.6235, 11.6683),
    (10, 4.7954, 18.3904),
])
def test_poisson_interval_known_values(k, low, high):
    lo, hi = poisson_interval(k)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_poisson_interval_is_exact_so_it_covers_at_least_its_level():
    rng = np.random.default_rng(1)
    mean = 4.2
    covered = np.mean([lo <= mean <= hi for lo, hi in map(poisson_interval, rng.poisson(mean, 4000))])
    assert covered >= 0.95


def test_quantile_interval_is_the_central_part_of_the_draws():
    assert quantile_interval(np.arange(1001)) == (25.0, 975.0)
    assert quantile_interval(np.arange(101), level=0.5) == (25.0, 75.0)


def test_day_bootstrap_mae_resamples_the_same_days_for_every_method():
    days = 10
    sums = pd.DataFrame({"model": np.arange(1.0, days + 1) * 24, "naive": np.arange(1.0, days + 1) * 48})
    counts = pd.DataFrame({"model": np.full(days, 24), "naive": np.full(days, 24)})
    draws = day_bootstrap_mae(sums, counts, n_boot=500, seed=0)
    assert set(draws) == {"model", "naive"} and len(draws["model"]) == 500
    # the naive errs exactly twice as much every day: paired draws keep the ratio exactly
    assert np.allclose(draws["model"] / draws["naive"], 0.5)
    assert draws["model"].min() >= 1 and draws["model"].max() <= days
    assert np.mean(draws["model"]) == pytest.approx(5.5, abs=0.2)  # the MAE over all days
    again = day_bootstrap_mae(sums, counts, n_boot=500, seed=0)
    assert np.array_equal(draws["model"], again["model"])


def test_block_bootstrap_auc_brackets_the_auc_and_skips_one_class_draws():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(150), np.ones(50), np.zeros(100)].astype(int)
    scores = y + rng.normal(0, 0.8, len(y))
    draws = block_bootstrap_auc(y, scores, block=20, n_boot=300, seed=0)
    assert 0 < len(draws) <= 300 and np.all((draws >= 0) & (draws <= 1))
    lo, hi = quantile_interval(draws)
    assert lo < roc_auc_score(y, scores) < hi
