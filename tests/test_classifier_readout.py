"""Issue 10: the fair read-out (threshold from validation only), the paired bootstrap, the regime
registry (a new regime in one place is runnable) and --deterministic (same command, same bytes)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from melano_tf.classify import data as cdata
from melano_tf.classify import experiment as exp
from melano_tf.classify import experiment_config as xconf
from melano_tf.classify import experiment_report as xreport
from melano_tf.classify import metrics as M
from melano_tf.classify import regimes
from melano_tf.classify.config import ClassifierConfig
from melano_tf.data import phantom

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = {"melanoma": 24, "nevus": 40, "seborrheic_keratosis": 8}
NAMES = cdata.BINARY_CLASSES


def test_threshold_maximises_validation_balanced_accuracy():
    # t in (0.4, 0.8] and t in (0.1, 0.35] both give 0.75; the highest wins, at the midpoint
    assert M.choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.6)
    assert M.choose_threshold([0, 0, 1, 1], [0.1, 0.2, 0.35, 0.8]) == pytest.approx(0.275)   # separable
    assert M.choose_threshold([0, 0], [0.1, 0.2]) is None
    r = M.at_threshold([0, 0, 1, 1], [0.1, 0.7, 0.65, 0.9], 0.6)
    assert r == {"sensitivity": 1.0, "specificity": 0.5, "balanced_accuracy": 0.75}


def test_sensitivity_at_specificity_hand_case():
    neg = list(np.linspace(0.0, 0.9, 10))            # 10 negatives: 1 false positive allowed at 0.90
    assert M.sensitivity_at_specificity([0] * 10 + [1] * 3, neg + [0.95, 0.85, 0.5]) == pytest.approx(2 / 3)
    assert M.sensitivity_at_specificity([0] * 10 + [1] * 2, neg + [0.05, 0.01]) == 0.0


class _Scorer:
    """A fixed 'model': melanoma probability = mean intensity of the image in [0, 1]."""

    def __call__(self, x, training=False):
        p = (np.asarray(x).mean(axis=(1, 2, 3)) + 1.0) / 2.0
        return np.stack([1.0 - p, p], axis=1)


def _split(n, seed, frac_pos=0.3):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < frac_pos).astype(np.int32)
    labels[:2] = (0, 1)
    level = np.clip(rng.normal(90 + 60 * labels, 35), 0, 255)          # informative, overlapping
    images = np.broadcast_to(level[:, None, None, None], (n, 4, 4, 3)).astype(np.uint8)
    return cdata.Split(images, labels, np.array([f"i{i}" for i in range(n)]))


def test_threshold_uses_validation_only():
    from melano_tf.classify import train as ctrain
    val, test = _split(60, 1), _split(80, 2)
    base, _ = ctrain.evaluate_model(_Scorer(), val, test, NAMES)
    t = base["readout"]["threshold"]
    assert t is not None
    rng = np.random.default_rng(0)
    for _ in range(5):     # test labels shuffled (or inverted): the threshold must not move
        leaked = cdata.Split(test.images, rng.permutation(test.labels), test.ids)
        assert ctrain.evaluate_model(_Scorer(), val, leaked, NAMES)[0]["readout"]["threshold"] == t
    inverted = cdata.Split(test.images, 1 - test.labels, test.ids)
    assert ctrain.evaluate_model(_Scorer(), val, inverted, NAMES)[0]["readout"]["threshold"] == t
    # ...while the validation labels do move it (the selection really looks at validation)
    other = cdata.Split(val.images, 1 - val.labels, val.ids)
    assert ctrain.evaluate_model(_Scorer(), other, test, NAMES)[0]["readout"]["threshold"] != t
    # and the test metrics are read at exactly that threshold
    s = _Scorer()(cdata.to_float(test.images))[:, 1]
    r = M.at_threshold(test.labels == 1, s, t)
    assert base["readout"]["sensitivity_at_t"] == r["sensitivity"]
    assert base["readout"]["specificity_at_t"] == r["specificity"]


def test_paired_bootstrap_hand_computed():
    # d = (-1, 0, 0, 4), n = 4: resampled means have P(-1) = 1/256, P(-0.75) = 8/256 -> 2.5% quantile
    # -0.75; P(4) = 1/256, P(3) = 8/256 -> 97.5% quantile 3; mean 0.75
    r = M.paired_bootstrap([0, 1, 1, 5], [1, 1, 1, 1], num_resamples=20000, seed=0)
    assert r == {"n": 4, "mean": 0.75, "low": -0.75, "high": 3.0}
    # d = (1, 3): means 1, 2, 3 with P 1/4, 1/2, 1/4 -> [1, 3]
    assert M.paired_bootstrap([2, 5], [1, 2], num_resamples=5000) == {"n": 2, "mean": 2.0, "low": 1.0, "high": 3.0}
    # pairs with a None are dropped; the same rng seed gives the same interval
    assert M.paired_bootstrap([1, None, 3], [0, 5, 1], 5000) == M.paired_bootstrap([1, 3], [0, 1], 5000)
    assert M.verdict({"mean": 0.1, "low": 0.01, "high": 0.2}) == "beats"
    assert M.verdict({"mean": -0.1, "low": -0.2, "high": -0.01}) == "loses"
    assert M.verdict({"mean": 0.1, "low": -0.01, "high": 0.2}) == "ties"
    beats, ties, loses = ({"mean": 1, "low": 0.5, "high": 1}, {"mean": 0, "low": -1, "high": 1},
                          {"mean": -1, "low": -1, "high": -0.5})
    assert xreport.overall_verdict({"pr_auc": beats, "sensitivity_at_spec90": ties}) == "beats"
    assert xreport.overall_verdict({"pr_auc": beats, "sensitivity_at_spec90": loses}) == "ties"
    assert xreport.overall_verdict({"pr_auc": ties, "sensitivity_at_spec90": loses}) == "loses"


def test_paired_differences_pair_by_seed():
    res = {"oversample": [{"seed": s, "readout": {"pr_auc": v}} for s, v in ((0, 0.5), (1, 0.6), (2, 0.7))],
           "x": [{"seed": s, "readout": {"pr_auc": v}} for s, v in ((2, 0.9), (0, 0.6))]}   # seed 1 missing
    d = xreport.paired_differences(res, ["oversample", "x"], num_resamples=1000)
    assert list(d) == ["x"] and d["x"]["pr_auc"]["n"] == 2
    assert d["x"]["pr_auc"]["mean"] == pytest.approx(0.15)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("phantoms"))
    return phantom.write_isic_layout(out, resolution=32, seed=0, class_counts=COUNTS, progress=False)


def test_new_regime_registered_in_one_place_runs(phantoms, tmp_path):
    @regimes.register("halve_rest")
    def halve_rest(ctx):
        """Every other non-melanoma image dropped."""
        rest = np.flatnonzero(ctx.train.labels != ctx.positive)
        return ctx.training_set(np.r_[np.flatnonzero(ctx.train.labels == ctx.positive), rest[::2]])

    try:
        ClassifierConfig(regime="halve_rest").validate()
        conf = xconf.ExperimentConfig(out_dir=str(tmp_path), data_dir=phantoms, resolution=32, seeds=(0,),
                                    regimes=("oversample", "halve_rest"), imbalance=8, classifier_steps=2,
                                    classifier=ClassifierConfig(batch_size=8, width=4), num_bootstrap=100)
        summary = exp.run_experiment(conf)
        (m,) = summary["results"]["halve_rest"]
        assert m["train_counts"]["real"]["non_melanoma"] == (summary["train_counts"]["non_melanoma"] + 1) // 2
        assert "halve_rest" in summary["verdicts"]
        assert "- `halve_rest` **" in open(tmp_path / "results.md").read()
    finally:
        regimes.unregister("halve_rest")
    with pytest.raises(Exception, match="halve_rest"):
        xconf.ExperimentConfig(regimes=("halve_rest",)).validate()


def _experiment(out, phantoms):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    args = [sys.executable, os.path.join(ROOT, "bin", "imbalance_experiment"), f"--model_dir={out}",
            f"--data_dir={phantoms}", "--resolution=32", "--imbalance=8", "--seeds=0,1", "--gan_seeds=0",
            "--regimes=oversample,synthetic_filtered", "--gan_scheme=dcgan", "--gan_steps=2",
            "--gan_batch_size=4", "--gan_latent_dim=16", "--gan_base_filters=32", "--gan_min_filters=8",
            "--train_steps=3", "--batch_size=8", "--width=4", "--num_bootstrap=200", "--deterministic"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(os.path.join(out, "results.json"), "rb") as f:
        return f.read()


@pytest.mark.slow
def test_deterministic_runs_give_identical_results_json(phantoms, tmp_path):
    a = _experiment(tmp_path / "a", phantoms)
    b = _experiment(tmp_path / "b", phantoms)
    assert a == b
    assert b"synthetic_filtered" in a and b'"threshold"' in a
