import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from stica_jax.evaluate.metrics import topk_accuracy


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_accuracy_equals_scikit_learns(k):
    rng = np.random.default_rng(k)
    scores = rng.standard_normal((200, 7))  # continuous: no ties, where the two may differ
    labels = rng.integers(0, 7, 200)
    want = 100 * top_k_accuracy_score(labels, scores, k=k, labels=np.arange(7))
    assert topk_accuracy(scores, labels, k) == pytest.approx(want)


def test_top1_is_the_accuracy_of_argmax_and_ties_go_to_the_lower_class():
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2, 0, 1])
    assert topk_accuracy(scores, labels, 1) == 100 * np.mean(np.argmax(scores, -1) == labels)
    assert topk_accuracy(scores, labels, 1) == 50.0


def test_k_beyond_the_number_of_classes_counts_every_sample():
    scores = np.random.default_rng(0).standard_normal((5, 3))
    assert topk_accuracy(scores, np.array([0, 1, 2, 0, 1]), 5) == 100.0
