import numpy as np
import pytest

from softras.evaluate import bootstrap_interval, category_mean


def test_bootstrap_interval_resamples_models_not_views():
    rng = np.random.default_rng(1)
    per_model = rng.uniform(0.2, 0.8, size=12)
    categories = np.array(["chair"] * 6 + ["table"] * 4 + ["lamp"] * 2)

    def views(count: int):
        return (np.repeat(per_model, count), np.repeat(categories, count), np.repeat(np.arange(12), count))

    low, high = bootstrap_interval(*views(2))
    assert low < category_mean(*views(2)[:2]) < high
    # more views of the same models tell nothing new about other models: the interval does not narrow
    assert bootstrap_interval(*views(8)) == pytest.approx((low, high))
    # a wider spread between models widens it; scores that agree leave nothing to resample
    spread = bootstrap_interval(np.repeat(0.5 + 2 * (per_model - 0.5), 2), *views(2)[1:])
    assert spread[1] - spread[0] > high - low
    assert bootstrap_interval(np.full(24, 0.4), *views(2)[1:]) == pytest.approx((0.4, 0.4))
    narrow = bootstrap_interval(*views(2), level=0.5)
    assert low <= narrow[0] <= narrow[1] <= high


def test_bootstrap_interval_refuses_mismatched_input():
    with pytest.raises(ValueError, match="same length"):
        bootstrap_interval(np.zeros(3), np.array(["a", "b"]), np.arange(3))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval(np.zeros(0), np.array([]), np.array([]))
