"""The probes' classifiers against scikit-learn's own: k-NN by cosine similarity with a majority
vote, and logistic regression on features standardised with the training split's statistics."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from stica_jax.evaluate.probe import knn_accuracy, linear_probe_accuracy, probe


def _clusters(n, num_classes=5, dim=12, spread=1.5, seed=0, scale=None):
    """Noisy clusters around class centres: overlapping enough that mistakes happen."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(42).standard_normal((num_classes, dim))
    y = rng.integers(0, num_classes, n)
    x = centres[y] + spread * rng.standard_normal((n, dim))
    if scale is not None:
        x = x * scale
    return x.astype(np.float32), y


@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_is_scikit_learns_cosine_knn_with_a_majority_vote(k):
    train_x, train_y = _clusters(300)
    test_x, test_y = _clusters(200, seed=1)
    # Each row scaled by its own positive factor: cosine similarity must not see it.
    test_x *= np.random.default_rng(2).uniform(0.1, 10, (len(test_x), 1)).astype(np.float32)
    reference = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    expected = 100.0 * np.mean(reference.fit(train_x, train_y).predict(test_x) == test_y)
    got = knn_accuracy(train_x, train_y, test_x, test_y, k=k)
    assert got == pytest.approx(expected, abs=1e-9)
    assert 30.0 < got < 100.0  # neither trivial nor hopeless: the comparison means something


def test_linear_probe_is_logistic_regression_on_standardised_features():
    """Columns that differ in scale by 1e4: the reference standardises both splits with the
    training split's mean and deviation; without standardising, the L2 penalty weighs the
    columns otherwise and the score differs."""
    scale = np.geomspace(1e-2, 1e2, 12)
    train_x, train_y = _clusters(400, scale=scale)
    test_x, test_y = _clusters(200, seed=1, scale=scale)
    mean, std = train_x.mean(0), train_x.std(0)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit((train_x - mean) / std, train_y)
    expected = 100.0 * np.mean(reference.predict((test_x - mean) / std) == test_y)
    got = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    assert got == pytest.approx(expected, abs=0.51)  # one test clip is 0.5 points
    assert 50.0 < got < 100.0
    assert probe("linear_probe", (train_x, train_y), (test_x, test_y)) == got
    with pytest.raises(ValueError, match="unknown probe 'svm'"):
        probe("svm", (train_x, train_y), (test_x, test_y))
