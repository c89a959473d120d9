"""Classification metrics in numpy (ranks from ``scipy.stats.rankdata``), melanoma as the positive class.

Notation: ``y`` true labels in {0..K-1}, ``yhat = argmax_k p_k`` predicted labels, ``s`` the
melanoma score ``p_melanoma``, P the melanoma index. With the confusion matrix
``C[i, j] = #{y = i, yhat = j}`` (rows: truth, columns: prediction), N = sum C:

* accuracy = trace(C) / N
* balanced accuracy = (1 / |K'|) sum_{k in K'} C[k, k] / sum_j C[k, j], K' = classes present in y
* sensitivity (melanoma recall) = TP / (TP + FN), TP = C[P, P], FN = sum_j C[P, j] - TP
* specificity = TN / (TN + FP), FP = sum_i C[i, P] - TP, TN = N - TP - FN - FP
  (for K > 2 "negative" is every non-melanoma class: melanoma vs rest)
* ROC AUC = P(s+ > s-) + P(s+ = s-) / 2 (Mann-Whitney U with tie-averaged ranks):
  ``AUC = (R+ - n+ (n+ + 1) / 2) / (n+ n-)``, R+ the rank sum of the positives; equal to the
  trapezoidal area under the ROC curve.
* PR AUC as average precision: ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score
  thresholds taken in decreasing order (R recall, P precision at threshold k; R_0 = 0); a step
  integral, no interpolation.

A metric whose denominator is empty (e.g. AUC with one class present) is ``None``.

The fair read-out (``readout``) replaces the argmax decision by a threshold t on the melanoma
score chosen on the *validation* split: predict melanoma iff ``s >= t``, with
``t = argmax_t (TPR_val(t) + TNR_val(t)) / 2`` over the midpoints between consecutive distinct
validation scores (ties: the highest such t). It reports, on the test split, balanced accuracy
``(TPR + TNR) / 2``, sensitivity TPR and specificity TNR at that t, the sensitivity at a fixed
specificity of 0.90 (``sensitivity_at_specificity``: the highest TPR of the empirical test ROC
among the thresholds with TNR >= 0.90, no interpolation), ROC AUC and PR AUC. The test labels
enter none of the choices.

``paired_bootstrap``: differences d_i = a_i - b_i paired by seed; the mean difference and the
percentile interval of the means of B resamples of the seeds (with replacement, fixed rng).
"""

from __future__ import annotations

import numpy as np

from melano_tf import viz


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of examples of true class i predicted as j; int64 (K, K)."""
    y_true = np.asarray(y_true, np.int64).ravel()
    y_pred = np.asarray(y_pred, np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} has labels outside 0..{num_classes - 1}")
    c = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(c, (y_true, y_pred), 1)
    return c


def _ratio(num: float, den: float):
    return None if den == 0 else float(num) / float(den)


def accuracy(c: np.ndarray):
    return _ratio(np.trace(c), c.sum())


def balanced_accuracy(c: np.ndarray):
    support = c.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(c)[present] / support[present]))


def sensitivity_specificity(c: np.ndarray, positive: int) -> tuple:
    """(TP / (TP + FN), TN / (TN + FP)) of class ``positive`` against all others."""
    tp = c[positive, positive]
    fn = c[positive].sum() - tp
    fp = c[:, positive].sum() - tp
    tn = c.sum() - tp - fn - fp
    return _ratio(tp, tp + fn), _ratio(tn, tn + fp)


def roc_auc(is_positive, scores):
    """Area under the ROC curve by the Mann-Whitney statistic (see the module docstring)."""
    pos = np.asarray(is_positive, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    from scipy.stats import rankdata
    r_pos = rankdata(s, method="average")[pos].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _threshold_counts(pos: np.ndarray, s: np.ndarray):
    """Cumulative (TP, FP) at each distinct threshold, scores in decreasing order."""
    order = np.argsort(-s, kind="mergesort")
    s, pos = s[order], pos[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # last index of each distinct score
    tp = np.cumsum(pos)[last]
    fp = np.cumsum(~pos)[last]
    return tp.astype(np.float64), fp.astype(np.float64), s[last]


def roc_curve(is_positive, scores):
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf; predict positive iff s >= t."""
    pos = np.asarray(is_positive, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    tp, fp, thr = _threshold_counts(pos, s)
    n_pos, n_neg = max(int(pos.sum()), 1), max(int((~pos).sum()), 1)
    return (np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thr])


def average_precision(is_positive, scores):
    """PR AUC as average precision (see the module docstring); None without positives."""
    pos = np.asarray(is_positive, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos = int(pos.sum())
    if n_pos == 0:
        return None
    tp, fp, _ = _threshold_counts(pos, s)
    recall = tp / n_pos
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def choose_threshold(is_positive, scores) -> float | None:
    """The validation threshold maximising balanced accuracy (see the module docstring).

    Candidates are the midpoints between consecutive distinct scores (and 0.5 below the lowest,
    0.5 above the highest), so t never sits on a validation score. None without both classes.
    """
    pos = np.asarray(is_positive, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    tp, fp, thr = _threshold_counts(pos, s)           # at t = thr[k] (decreasing): s >= thr[k]
    bal = (tp / n_pos + 1.0 - fp / n_neg) / 2.0
    bal = np.r_[0.5, bal]                             # t above every score: nothing positive
    k = int(np.argmax(bal))                           # first maximum: the highest threshold
    # bal[k], k >= 1: predict positive iff s >= thr[k-1], i.e. any t in (thr[k], thr[k-1]]
    ext = np.r_[thr[0] + 1.0, thr, thr[-1] - 1.0]
    return float((ext[k] + ext[k + 1]) / 2.0)


def at_threshold(is_positive, scores, threshold: float) -> dict:
    """Sensitivity, specificity and (binary) balanced accuracy of ``s >= threshold``."""
    pos = np.asarray(is_positive, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    pred = s >= threshold
    sens = _ratio((pred & pos).sum(), pos.sum())
    spec = _ratio((~pred & ~pos).sum(), (~pos).sum())
    bal = None if sens is None or spec is None else (sens + spec) / 2.0
    return {"sensitivity": sens, "specificity": spec, "balanced_accuracy": bal}


def sensitivity_at_specificity(is_positive, scores, specificity: float = 0.90):
    """Highest TPR of the empirical ROC among thresholds with TNR >= ``specificity`` (no interpolation)."""
    pos = np.asarray(is_positive, bool).ravel()
    if pos.all() or not pos.any():
        return None
    fpr, tpr, _ = roc_curve(pos, scores)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max())


#: The read-out's keys (threshold chosen on validation; everything else measured on test).
READOUT_KEYS = ("threshold", "balanced_accuracy_at_t", "sensitivity_at_t", "specificity_at_t",
                "sensitivity_at_spec90", "roc_auc", "pr_auc")


def readout(val_is_positive, val_scores, test_is_positive, test_scores) -> dict:
    """The fair read-out (module docstring): threshold from validation, metrics on test."""
    t = choose_threshold(val_is_positive, val_scores)
    out = {"threshold": t}
    if t is None:
        out.update(balanced_accuracy_at_t=None, sensitivity_at_t=None, specificity_at_t=None)
    else:
        m = at_threshold(test_is_positive, test_scores, t)
        out.update(balanced_accuracy_at_t=m["balanced_accuracy"], sensitivity_at_t=m["sensitivity"],
                   specificity_at_t=m["specificity"])
    out.update(sensitivity_at_spec90=sensitivity_at_specificity(test_is_positive, test_scores, 0.90),
               roc_auc=roc_auc(test_is_positive, test_scores),
               pr_auc=average_precision(test_is_positive, test_scores))
    return out


def paired_bootstrap(a, b, num_resamples: int = 10000, level: float = 0.95, seed: int = 0) -> dict:
    """Mean of ``a_i - b_i`` (paired by index) and its percentile bootstrap interval.

    The n seeds are resampled with replacement ``num_resamples`` times by ``default_rng(seed)``;
    the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (numpy's default
    linear interpolation) of the resampled means. Pairs with a None are dropped.
    """
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return {"n": 0, "mean": None, "low": None, "high": None}
    d = np.array([x - y for x, y in pairs], np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(num_resamples, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return {"n": len(d), "mean": float(d.mean()), "low": float(lo), "high": float(hi)}


def verdict(interval: dict) -> str:
    """``beats`` (interval above 0), ``loses`` (below 0) or ``ties`` (contains 0); n/a without pairs."""
    if interval.get("mean") is None:
        return "n/a"
    if interval["low"] > 0:
        return "beats"
    if interval["high"] < 0:
        return "loses"
    return "ties"


def evaluate(y_true, probabilities, class_names, positive: str = "melanoma") -> dict:
    """All metrics of one test set; ``probabilities`` (N, K). JSON-ready dict."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(y_true, np.int64).ravel()
    k = len(class_names)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise ValueError(f"probabilities {p.shape}: expected ({len(y)}, {k})")
    pi = list(class_names).index(positive)
    c = confusion_matrix(y, np.argmax(p, axis=1), k)
    sens, spec = sensitivity_specificity(c, pi)
    is_pos, score = y == pi, p[:, pi]
    return {
        "num_examples": int(len(y)),
        "num_positive": int(is_pos.sum()),
        "positive_class": positive,
        "class_names": list(class_names),
        "accuracy": accuracy(c),
        "balanced_accuracy": balanced_accuracy(c),
        "sensitivity": sens,
        "specificity": spec,
        "roc_auc": roc_auc(is_pos, score),
        "pr_auc": average_precision(is_pos, score),
        "confusion_matrix": c.tolist(),
    }


def roc_plot(path: str, curves: dict, title: str = "ROC, melanoma vs rest") -> str:
    """PNG of ROC curves; ``curves``: label -> (is_positive, scores). Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="chance")
    for label, (is_pos, scores) in curves.items():
        fpr, tpr, _ = roc_curve(is_pos, scores)
        auc = roc_auc(is_pos, scores)
        ax.plot(fpr, tpr, lw=1.5,
                label=f"{label} (AUC {auc:.3f})" if auc is not None else label)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    return viz.save_figure(fig, path, dpi=100)
