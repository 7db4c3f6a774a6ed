"""Accuracy of class scores against labels, as every evaluation protocol reports it."""

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Top-k accuracy (%) of `scores` `[N, K]` for int `labels` `[N]`.

    A sample counts when its label is among its k highest scores (k is capped at K); among
    equal scores the lower class comes first, so top-1 is the accuracy of `np.argmax`.
    """
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return 100.0 * float(np.mean(np.any(top == labels[:, None], axis=1)))
