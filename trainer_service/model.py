"""The classifier: one linear layer and a log-softmax over two classes, on standardised
features, trained with class-balanced epochs and early stopping on validation F1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer_service.domain import Metrics

# torch and scikit-learn are imported where used: they take seconds to import, and the
# service must report healthy without waiting for them.

BATCH_SIZE = 256
# Large label sets use larger batches, so an epoch is a bounded number of steps.
STEPS_PER_EPOCH = 32
PATIENCE = 6
# Dimensions the model weighs most: the space in which outliers are measured.
OUTLIER_DIMS = 32


@dataclass
class LinearModel:
    weight: np.ndarray  # (2, d): rows score the negative and the positive class
    bias: np.ndarray  # (2,)
    mean: np.ndarray  # (d,) standardisation, from the training labels
    scale: np.ndarray  # (d,)
    threshold: float = 0.5

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Positive-minus-negative logit; the standardisation is folded into the weights
        so a large pool is never copied."""
        w = (self.weight[1] - self.weight[0]) / self.scale
        b = float(self.bias[1] - self.bias[0] - self.mean @ w)
        return np.asarray(x @ w.astype(np.float32), dtype=np.float64) + b

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(positive): a two-class softmax is the sigmoid of the logit difference."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def outlier_dims(self) -> np.ndarray:
        influence = np.abs(self.weight[1] - self.weight[0])
        k = min(OUTLIER_DIMS, influence.size)
        return np.sort(np.argpartition(-influence, k - 1)[:k])

    def activations(self, x: np.ndarray, dims: np.ndarray) -> np.ndarray:
        """What the model sees of each item: the contribution of each of its most
        influential standardised features to the logit."""
        w = self.weight[1, dims] - self.weight[0, dims]
        return ((x[:, dims] - self.mean[dims]) / self.scale[dims] * w).astype(np.float32)


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximises F1 of the positive class."""
    from sklearn.metrics import precision_recall_curve
    if y.sum() == 0 or y.sum() == len(y):
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def best_f1(y: np.ndarray, p: np.ndarray) -> float:
    """The highest F1 over all thresholds, in one sort (cheap enough for every epoch)."""
    positives = int(y.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-p, kind="stable")
    tp = np.cumsum(y[order])
    predicted = np.arange(1, len(y) + 1)
    return float(np.max(2 * tp / (predicted + positives)))


def measure(y: np.ndarray, p: np.ndarray, threshold: float) -> Metrics:
    from sklearn.metrics import (
        average_precision_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )
    y = np.asarray(y, dtype=int)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if len(y) == 0:
        return Metrics(threshold=threshold)
    predicted = (p >= threshold).astype(int)
    both = positives > 0 and negatives > 0
    return Metrics(
        f1=float(f1_score(y, predicted, zero_division=0)),
        precision=float(precision_score(y, predicted, zero_division=0)),
        recall=float(recall_score(y, predicted, zero_division=0)),
        roc_auc=float(roc_auc_score(y, p)) if both else 0.0,
        average_precision=float(average_precision_score(y, p)) if positives else 0.0,
        threshold=threshold, positives=positives, negatives=negatives)


def balanced_epoch(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of one epoch with as many positives as negatives: the minority class is
    drawn with replacement up to the majority's count."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n = max(len(pos), len(neg))
    picks = [c if len(c) == n else rng.choice(c, n, replace=True) for c in (pos, neg)]
    order = np.concatenate(picks)
    rng.shuffle(order)
    return order


def train(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
          max_epochs: int = 60, seed: int = 0, lr: float = 1e-2,
          weight_decay: float = 1e-4) -> LinearModel:
    """Trains on (x, y), keeping the epoch with the best validation F1 (at its own best
    threshold). Without both classes in validation, the training labels choose instead."""
    import torch

    # One thread: a linear layer gains little from more, and the service keeps a core.
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0).astype(np.float64)
    scale = x.std(axis=0).astype(np.float64)
    scale[scale < 1e-6] = 1.0
    xs = torch.from_numpy((x - mean.astype(np.float32)) / scale.astype(np.float32))
    targets = torch.from_numpy(np.asarray(y, dtype=np.int64))
    has_val = len(y_val) and 0 < np.sum(y_val) < len(y_val)
    check_x, check_y = (x_val, np.asarray(y_val)) if has_val else (x, np.asarray(y))

    layer = torch.nn.Linear(x.shape[1], 2)
    optimiser = torch.optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.NLLLoss()
    best: tuple[float, LinearModel] | None = None
    stale = 0
    for _ in range(max_epochs):
        order = torch.from_numpy(balanced_epoch(np.asarray(y), rng))
        batch = max(BATCH_SIZE, -(-len(order) // STEPS_PER_EPOCH))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            optimiser.zero_grad()
            loss = loss_fn(torch.log_softmax(layer(xs[idx]), dim=1), targets[idx])
            loss.backward()
            optimiser.step()
        model = LinearModel(layer.weight.detach().numpy().astype(np.float64).copy(),
                            layer.bias.detach().numpy().astype(np.float64).copy(), mean, scale)
        score = best_f1(check_y, model.probability(check_x))
        if best is None or score > best[0]:
            best, stale = (score, model), 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    assert best is not None
    model = best[1]
    model.threshold = choose_threshold(check_y, model.probability(check_x))
    return model
