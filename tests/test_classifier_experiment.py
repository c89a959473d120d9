"""The imbalance experiment end to end on a tiny phantom set (every regime trains), and the
bin/train_classifier and bin/imbalance_experiment command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from melano_tf.classify import experiment as exp
from melano_tf.classify import experiment_config as xconf
from melano_tf.classify import experiment_report as xreport
from melano_tf.classify.config import ClassifierConfig
from melano_tf.data import phantom

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # keras save_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = {"melanoma": 24, "nevus": 40, "seborrheic_keratosis": 8}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("phantoms"))
    return phantom.write_isic_layout(out, resolution=32, seed=0, class_counts=COUNTS, progress=False)


@pytest.fixture(scope="module")
def experiment(phantoms, tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment")
    conf = xconf.ExperimentConfig(
        out_dir=str(out / "run"), data_dir=phantoms, resolution=32, seeds=(0, 1), gan_seeds=(0, 1), imbalance=8,
        gan=xconf.gan_recipe(scheme="dcgan", steps=2, batch_size=4, latent_dim=16, base_filters=32, min_filters=8),
        classifier_steps=2, classifier=ClassifierConfig(batch_size=8, width=4),
        num_bootstrap=200, export_base=str(out / "export"), gan_cond_transition=0.5)
    import keras
    policy = keras.mixed_precision.global_policy().name
    try:
        return conf, exp.run_experiment(conf)
    finally:
        keras.mixed_precision.set_global_policy(policy)   # the GAN run sets its own


@pytest.mark.slow
def test_every_regime_trains_and_is_tabled(experiment):
    conf, summary = experiment
    assert summary["train_counts"]["melanoma"] == summary["train_counts"]["non_melanoma"] // 8
    lines = summary["table"].splitlines()
    assert len(lines) == 2 + len(conf.regimes) and set(conf.regimes) == set(xconf.DEFAULT_REGIMES)
    for regime in conf.regimes:
        runs = summary["results"][regime]
        assert [m["seed"] for m in runs] == [0, 1]
        for m in runs:
            for key, _ in xreport.METRICS:
                assert m["readout"][key] is None or 0.0 <= m["readout"][key] <= 1.0
            assert sum(map(sum, m["confusion_matrix"])) == sum(summary["test_counts"].values())
            assert "train_seconds" not in m
        run = os.path.join(conf.out_dir, "runs", regime, "seed0")
        assert os.path.isfile(os.path.join(run, "metrics.json")) and os.path.isfile(os.path.join(run, "roc.png"))
        assert any(line.startswith(f"| {regime} |") for line in lines)
    # generator-dependent regimes: classifier seed i uses GAN seed i mod 2
    assert [m["generator"] for m in summary["results"]["synthetic"]] == ["all_conditional_seed0",
                                                                         "all_conditional_seed1"]
    assert summary["results"]["oversample"][0]["generator"] is None
    syn = summary["results"]["synthetic"][0]["train_counts"]
    assert syn["synthetic"]["melanoma"] == syn["real"]["non_melanoma"] - syn["real"]["melanoma"]
    only = summary["results"]["synthetic_only"][0]["train_counts"]
    assert only["real"]["melanoma"] == 0 and only["synthetic"]["melanoma"] == only["real"]["non_melanoma"]
    over = summary["results"]["oversample"][0]["train_counts"]["real"]
    assert over["melanoma"] == over["non_melanoma"]
    so = summary["results"]["synthetic_oversample"][0]["train_counts"]
    n_rest, n_mel = summary["train_counts"]["non_melanoma"], summary["train_counts"]["melanoma"]
    assert so["synthetic"]["melanoma"] == (n_rest - n_mel) // 2
    assert so["synthetic"]["melanoma"] + so["real"]["melanoma"] == so["real"]["non_melanoma"] == n_rest
    for m in summary["results"]["synthetic_filtered"]:
        f = m["train_counts"]
        accepted = summary["filter"][m["generator"]]["accepted"]
        assert f["synthetic"]["melanoma"] == min(accepted, n_rest - n_mel)
        assert f["synthetic"]["melanoma"] + f["real"]["melanoma"] == n_rest      # shortfall: real oversampled
    assert 0.0 < summary["filter"]["threshold"] < 1.0
    # paired differences to oversample, one verdict line per regime
    assert set(summary["differences"]) == set(conf.regimes) - {"oversample"}
    text = open(os.path.join(conf.out_dir, "results.md")).read()
    assert summary["table"] in text
    for regime in set(conf.regimes) - {"oversample"}:
        (line,) = [x for x in text.splitlines() if x.startswith(f"- `{regime}` ")]
        assert summary["verdicts"][regime] in ("beats", "ties", "loses") and summary["verdicts"][regime] in line
    assert os.path.isfile(os.path.join(conf.out_dir, "images.png"))
    with open(os.path.join(conf.out_dir, "results.json")) as f:
        assert conf.out_dir not in f.read()                       # relative paths only


@pytest.mark.slow
def test_gans_saw_exactly_the_rare_training_split(experiment):
    conf, summary = experiment
    counts = summary["train_counts"]
    for g in ("all_conditional_seed0", "all_conditional_seed1"):
        with open(os.path.join(conf.out_dir, "gan", g, "cache", "manifest.json")) as f:
            m = json.load(f)
        assert m["counts"] == {"train": counts["melanoma"] + counts["non_melanoma"], "validation": 0, "test": 0}
        with open(os.path.join(conf.out_dir, "gan", g, "config.json")) as f:
            c = json.load(f)
        assert c["conditional"] and c["num_classes"] >= 3 and c["seed"] == int(g[-1])
        assert os.path.isfile(os.path.join(conf.out_dir, "gan", g, "saved_model", "saved_model.pb"))
        assert len(os.listdir(os.path.join(conf.out_dir, "synthetic", g))) == counts["non_melanoma"]


@pytest.mark.slow
def test_melanoma_only_generator(experiment, tmp_path):
    conf, _ = experiment
    import dataclasses
    c = dataclasses.replace(conf, out_dir=str(tmp_path), gan_data="melanoma_only", gan_seeds=(3,), seeds=(0,),
                            regimes=("oversample", "synthetic"), export_base=None)
    summary = exp.run_experiment(c)
    with open(tmp_path / "gan" / "melanoma_only_seed3" / "cache" / "manifest.json") as f:
        assert json.load(f)["counts"]["train"] == summary["train_counts"]["melanoma"]
    assert summary["results"]["synthetic"][0]["generator"] == "melanoma_only_seed3"


@pytest.mark.slow
def test_experiment_publishes_both_models(experiment):
    conf, _ = experiment
    text = open(os.path.join(conf.export_base, "models.config")).read()
    assert 'name: "lesion_classifier"' in text and 'name: "lesion_generator"' in text
    assert os.listdir(os.path.join(conf.export_base, "lesion_generator")) == ["1"]


@pytest.mark.slow
def test_three_classes(experiment, tmp_path):
    from melano_tf.classify import train as ctrain
    conf, _ = experiment
    from melano_tf.config import DataConfig
    c = ClassifierConfig(data=DataConfig(resolution=32), model_dir=str(tmp_path), num_classes=3, regime="oversample", train_steps=1,
                         batch_size=8, width=4, imbalance=8)
    train, val, test, names = ctrain.load_splits(c, os.path.join(conf.out_dir, "cache"))
    assert names == ("nevus", "melanoma", "seborrheic_keratosis") and set(train.labels) == {0, 1, 2}
    m, _ = ctrain.train_and_evaluate(c, train, test, names, say=lambda s: None, validation=val)
    assert m["readout"]["threshold"] is not None
    assert np.array(m["confusion_matrix"]).shape == (3, 3) and m["class_names"] == list(names)
    assert len(set(m["train_counts"]["real"].values())) == 1      # oversampled to the largest class


def test_gan_data_lands_in_the_train_split_of_its_cache(tmp_path):
    """write_gan_data renames ids so that the cache (same data seed) puts every image in train."""
    from melano_tf.data import cache, readers
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    classes = ["melanoma", "nevus", "seborrheic_keratosis", "other"] * 10
    ids = [f"ISIC_{i:07d}" for i in range(40)]
    out = exp.write_gan_data(str(tmp_path / "gan_data"), images, ids, seed=5, classes=classes)
    m = cache.prepare(readers.read_source(out), str(tmp_path / "cache"), resolution=16, seed=5, workers=1,
                      progress=False)
    assert m.counts == {"train": 30, "validation": 0, "test": 0}      # the "other" images are left out
    assert m.class_counts["train"] == {"melanoma": 10, "nevus": 10, "seborrheic_keratosis": 10}
    written = sorted(os.listdir(os.path.join(out, phantom.IMAGES_DIR)))
    renamed = [f for f in written if "~" in f]
    assert renamed and len(renamed) < len(written)                    # most ids kept, some renamed
    for f in written:                                                # each image under its own (new) id
        i = int(f.split("~")[0].split(".")[0][5:])
        with Image.open(os.path.join(out, phantom.IMAGES_DIR, f)) as im:
            assert np.array_equal(np.asarray(im), images[i])


def test_gan_config_ramps_the_classes_in_for_the_conditional_generator():
    g500 = xconf.gan_recipe(steps=500)
    conf = xconf.ExperimentConfig(gan=g500, gan_cond_transition=0.5)
    assert xconf.gan_config(conf, "d").cond_transition == (0, 250)
    assert xconf.gan_config(xconf.ExperimentConfig(gan=g500, gan_cond_transition=0.0), "d").cond_transition == ()
    only = xconf.ExperimentConfig(gan=g500, gan_cond_transition=0.5, gan_data="melanoma_only")
    assert xconf.gan_config(only, "d").cond_transition == () and not xconf.gan_config(only, "d").conditional
    with pytest.raises(exp.UserError, match="gan_cond_transition"):
        xconf.ExperimentConfig(gan_cond_transition=1.5).validate()


def test_every_gan_recipe_flag_reaches_the_generators_config():
    base = xconf.gan_config(xconf.ExperimentConfig(), "d", 3)
    assert base.seed == 3 and base.data.data_dir == "d" and base.conditional
    for key, (field, _) in xconf.GAN_FLAGS.items():
        old = getattr(xconf.GAN_RECIPE, field)
        new = {"scheme": "mod" if old == "dcgan" else "dcgan", "loss": "hinge", "g_upsample": "transpose", "augment": "none",
               "augment_policy": "cutout"}.get(key, old + 1 if isinstance(old, (int, float)) else old)
        assert new != old, key
        got = xconf.gan_config(xconf.ExperimentConfig(gan=xconf.gan_recipe(**{key: new})), "d", 3)
        assert getattr(got, field) == new, key
        assert got.seed == 3 and got.data.data_dir == "d"
    with pytest.raises(exp.UserError, match="--gan_seed_size"):
        xconf.gan_recipe(seed_size=3)


def test_the_experiment_binary_defines_one_flag_per_recipe_entry(fresh_python):
    # in a child process: defining the experiment's flags changes shared defaults of this process's FLAGS
    proc = fresh_python(
        "import json; from melano_tf import flags as f; from melano_tf.classify import experiment_config as e; "
        "f.define_experiment_flags(); print(json.dumps({k: f.FLAGS['gan_' + k].default for k in e.GAN_FLAGS}))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    defaults = json.loads(proc.stdout.strip().splitlines()[-1])
    assert defaults == {key: getattr(xconf.GAN_RECIPE, field) for key, (field, _) in xconf.GAN_FLAGS.items()}


def test_mean_std_and_table():
    assert xreport.mean_std([0.5, 0.7, None]) == (pytest.approx(0.6), pytest.approx(np.sqrt(0.02)))
    assert xreport.mean_std([0.5]) == (0.5, 0.0)
    assert xreport.mean_std([None]) == (None, None)


def _bin(name, *args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", name), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
def test_train_classifier_cli_synthetic_folder_and_publish(experiment, phantoms, tmp_path):
    conf, _ = experiment
    base = tmp_path / "export"
    proc = _bin("train_classifier", f"--data_dir={phantoms}", "--resolution=32", f"--model_dir={tmp_path / 'run'}",
                "--regime=synthetic", f"--synthetic={os.path.join(conf.out_dir, 'synthetic', 'all_conditional_seed0')}",
                "--imbalance=8",
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
