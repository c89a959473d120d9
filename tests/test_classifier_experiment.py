"""The imbalance experiment end to end on a tiny phantom set (every regime trains), and the
bin/train_classifier and bin/imbalance_experiment command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from melano_tf.classify import experiment as exp
from melano_tf.classify.config import REGIMES, ClassifierConfig
from melano_tf.data import phantom

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # keras save_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = {"melanoma": 20, "nevus": 36, "seborrheic_keratosis": 8}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("phantoms"))
    return phantom.write_isic_layout(out, resolution=32, seed=0, class_counts=COUNTS, progress=False)


@pytest.fixture(scope="module")
def experiment(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    conf = exp.ExperimentConfig(
        out_dir=str(out / "run"), data_dir=phantoms, resolution=32, seeds=(0,), imbalance=8,
        gan_scheme="dcgan", gan_steps=2, gan_batch_size=4, gan_latent_dim=16, gan_base_filters=32,
        classifier_steps=2, classifier=ClassifierConfig(batch_size=8, width=4),
        export_base=str(out / "export"))
    import keras
    policy = keras.mixed_precision.global_policy().name
    try:
        return conf, exp.run_experiment(conf)
    finally:
        keras.mixed_precision.set_global_policy(policy)   # the GAN run sets its own


def test_every_regime_trains_and_is_tabled(experiment):
    conf, summary = experiment
    assert summary["train_counts"]["melanoma"] == summary["train_counts"]["non_melanoma"] // 8
    lines = summary["table"].splitlines()
    assert len(lines) == 2 + len(REGIMES)
    for regime in REGIMES:
        (m,) = summary["results"][regime]
        for key, _ in exp.METRICS:
            assert m[key] is None or 0.0 <= m[key] <= 1.0
        assert sum(map(sum, m["confusion_matrix"])) == sum(summary["test_counts"].values())
        run = os.path.join(conf.out_dir, "runs", regime, "seed0")
        assert os.path.isfile(os.path.join(run, "metrics.json")) and os.path.isfile(os.path.join(run, "roc.png"))
        assert any(line.startswith(f"| {regime} |") for line in lines)
    syn = summary["results"]["synthetic"][0]["train_counts"]
    assert syn["synthetic"]["melanoma"] == syn["real"]["non_melanoma"] - syn["real"]["melanoma"]
    only = summary["results"]["synthetic_only"][0]["train_counts"]
    assert only["real"]["melanoma"] == 0 and only["synthetic"]["melanoma"] == only["real"]["non_melanoma"]
    over = summary["results"]["oversample"][0]["train_counts"]["real"]
    assert over["melanoma"] == over["non_melanoma"]
    with open(os.path.join(conf.out_dir, "results.md")) as f:
        assert summary["table"] in f.read()


def test_gan_saw_exactly_the_rare_training_melanoma(experiment):
    conf, summary = experiment
    with open(os.path.join(conf.out_dir, "gan", "cache", "manifest.json")) as f:
        m = json.load(f)
    assert m["counts"] == {"train": summary["train_counts"]["melanoma"], "validation": 0, "test": 0}
    assert os.path.isfile(os.path.join(conf.out_dir, "gan", "saved_model", "saved_model.pb"))
    assert len(os.listdir(os.path.join(conf.out_dir, "synthetic"))) == summary["train_counts"]["non_melanoma"]


def test_experiment_publishes_both_models(experiment):
    conf, _ = experiment
    text = open(os.path.join(conf.export_base, "models.config")).read()
    assert 'name: "lesion_classifier"' in text and 'name: "lesion_generator"' in text
    assert os.listdir(os.path.join(conf.export_base, "lesion_generator")) == ["1"]


def test_three_classes(experiment, tmp_path):
    from melano_tf.classify import train as ctrain
    conf, _ = experiment
    from melano_tf.config import DataConfig
    c = ClassifierConfig(data=DataConfig(resolution=32), model_dir=str(tmp_path), num_classes=3, regime="oversample", train_steps=1,
                         batch_size=8, width=4, imbalance=8)
    train, test, names = ctrain.load_splits(c, os.path.join(conf.out_dir, "cache"))
    assert names == ("nevus", "melanoma", "seborrheic_keratosis") and set(train.labels) == {0, 1, 2}
    m, _ = ctrain.train_and_evaluate(c, train, test, names, say=lambda s: None)
    assert np.array(m["confusion_matrix"]).shape == (3, 3) and m["class_names"] == list(names)
    assert len(set(m["train_counts"]["real"].values())) == 1      # oversampled to the largest class


def test_train_id_lands_in_train_split():
    from melano_tf.data.splits import split_of
    ids = [exp._train_id(f"ISIC_{i:07d}", 5) for i in range(50)]
    assert all(split_of(i, 5) == "train" for i in ids) and any("~" in i for i in ids)


def test_mean_std_and_table():
    assert exp.mean_std([0.5, 0.7, None]) == (pytest.approx(0.6), pytest.approx(np.sqrt(0.02)))
    assert exp.mean_std([0.5]) == (0.5, 0.0)
    assert exp.mean_std([None]) == (None, None)


def _bin(name, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def test_train_classifier_cli_synthetic_folder_and_publish(experiment, phantoms, tmp_path):
    conf, _ = experiment
    base = tmp_path / "export"
    proc = _bin("train_classifier", f"--data_dir={phantoms}", "--resolution=32", f"--model_dir={tmp_path / 'run'}",
                "--regime=synthetic", f"--synthetic={os.path.join(conf.out_dir, 'synthetic')}", "--imbalance=8",
                "--train_steps=2", "--batch_size=8", "--width=4", f"--export_base={base}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    with open(tmp_path / "run" / "metrics.json") as f:
        m = json.load(f)
    assert m["regime"] == "synthetic" and m["train_counts"]["synthetic"]["melanoma"] > 0
    assert os.path.isfile(tmp_path / "run" / "saved_model" / "saved_model.pb")
    assert os.listdir(base / "lesion_classifier") == ["1"]
    assert "--regime=synthetic" in (tmp_path / "run" / "flags.txt").read_text()


def test_cli_errors_are_one_line(tmp_path):
    proc = _bin("train_classifier", f"--model_dir={tmp_path}", "--regime=synthetic")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train_classifier: error: --regime=synthetic needs --synthetic=PATH (a generator SavedModel or a folder "
        "of images)"]
    proc = _bin("imbalance_experiment", f"--model_dir={tmp_path}", "--regimes=baseline,magic")
    assert proc.returncode == 2 and "--regimes=baseline,magic" in proc.stderr and len(proc.stderr.splitlines()) == 1
