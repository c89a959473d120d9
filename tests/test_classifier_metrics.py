"""Classifier metrics against values computed by hand (no sklearn)."""

import numpy as np
import pytest

from melano_tf.classify import metrics as M

# Six examples; scores of the positives {0.9, 0.4, 0.4}, of the negatives {0.35, 0.8, 0.1}.
Y = np.array([1, 1, 0, 0, 0, 1])
S = np.array([0.9, 0.4, 0.35, 0.8, 0.1, 0.4])


def test_roc_auc_by_hand():
    # pairs (pos, neg) with pos > neg: 0.9 beats all 3; each 0.4 beats 0.35 and 0.1 -> 3 + 2 + 2 = 7 of 9
    assert M.roc_auc(Y == 1, S) == pytest.approx(7 / 9)
    # a tie counts 1/2: pos {0.5}, neg {0.5, 0.2} -> (0.5 + 1) / 2
    assert M.roc_auc([True, False, False], [0.5, 0.5, 0.2]) == pytest.approx(0.75)
    assert M.roc_auc([True, True], [0.1, 0.2]) is None


def test_roc_curve_points_and_trapezoid_equal_auc():
    fpr, tpr, thr = M.roc_curve(Y == 1, S)
    # thresholds 0.9 (pos), 0.8 (neg), 0.4 (2 pos), 0.35 (neg), 0.1 (neg)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 1, 1, 1])
    np.testing.assert_allclose(thr[1:], [0.9, 0.8, 0.4, 0.35, 0.1])
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(7 / 9)


def test_average_precision_by_hand():
    # (R, P) per threshold: (1/3, 1), (1/3, 1/2), (1, 3/4), (1, 3/5), (1, 1/2)
    # AP = 1/3 * 1 + 0 * 1/2 + 2/3 * 3/4 + 0 + 0 = 5/6
    assert M.average_precision(Y == 1, S) == pytest.approx(5 / 6)
    assert M.average_precision([True, True, False], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert M.average_precision([False, False], [0.2, 0.1]) is None


def test_binary_confusion_and_rates():
    y_true = [1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 0, 0, 0, 0, 1, 0, 0]
    c = M.confusion_matrix(y_true, y_pred, 2)
    np.testing.assert_array_equal(c, [[4, 1], [2, 1]])
    assert M.accuracy(c) == pytest.approx(5 / 8)
    sens, spec = M.sensitivity_specificity(c, positive=1)
    assert sens == pytest.approx(1 / 3)
    assert spec == pytest.approx(4 / 5)
    assert M.balanced_accuracy(c) == pytest.approx((4 / 5 + 1 / 3) / 2)


def test_three_class_melanoma_vs_rest():
    # classes (nevus, melanoma, SK); rows truth, columns prediction
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 2, 1, 1, 0, 2, 2, 0, 1]
    c = M.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(c, [[1, 1, 1], [1, 1, 0], [1, 1, 2]])
    sens, spec = M.sensitivity_specificity(c, positive=1)
    assert sens == pytest.approx(1 / 2)          # TP 1, FN 1
    assert spec == pytest.approx(5 / 7)          # negatives 7, of which FP 2 (nevus<->SK confusions are TN)
    assert M.balanced_accuracy(c) == pytest.approx((1 / 3 + 1 / 2 + 2 / 4) / 3)
    assert M.accuracy(c) == pytest.approx(4 / 9)


def test_balanced_accuracy_ignores_absent_classes_and_none_on_empty():
    c = M.confusion_matrix([0, 0, 1], [0, 1, 1], 3)
    assert M.balanced_accuracy(c) == pytest.approx((1 / 2 + 1) / 2)
    assert M.sensitivity_specificity(M.confusion_matrix([0, 0], [0, 0], 2), 1)[0] is None
    with pytest.raises(ValueError):
        M.confusion_matrix([0, 3], [0, 1], 3)


def test_evaluate_and_roc_plot(tmp_path):
    probs = np.stack([1 - S, S], axis=1)
    r = M.evaluate(Y, probs, ("non_melanoma", "melanoma"))
    assert r["roc_auc"] == pytest.approx(7 / 9) and r["pr_auc"] == pytest.approx(5 / 6)
    # argmax: predicted melanoma iff s > 0.5 -> 0.9, 0.8
    assert r["confusion_matrix"] == [[2, 1], [2, 1]]
    assert r["sensitivity"] == pytest.approx(1 / 3) and r["specificity"] == pytest.approx(2 / 3)
    assert r["num_positive"] == 3 and r["num_examples"] == 6
    path = M.roc_plot(str(tmp_path / "roc.png"), {"a": (Y == 1, S)})
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
