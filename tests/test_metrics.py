"""Every metric against an independent reference (scipy, skimage, direct formulas)."""

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import scipy.signal
import scipy.spatial.distance
import scipy.stats

from melano_tf import metrics
from melano_tf.data import phantom
from melano_tf.errors import UserError
from melano_tf.evaluation import online
from melano_tf.metrics import feature_cache, features, fid, histograms, kid, memorization, msssim, swd


@pytest.fixture(scope="module")
def lesions():
    """48 phantoms at 64 px (deterministic)."""
    return np.stack([phantom.render(i, i % 3, 64) for i in range(48)])


# ---------------------------------------------------------------------------------------------- FID / KID


def _random_gaussian(rng, n, d, shift):
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ a + shift


def test_fid_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    x = _random_gaussian(rng, 300, 12, 0.0)
    y = _random_gaussian(rng, 250, 12, 0.3)
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert fid.fid_from_activations(x, y) == pytest.approx(ref, rel=1e-8)
    assert fid.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_kid_matches_direct_formula():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((15, 4)), rng.standard_normal((15, 4)) + 0.5
    k = lambda a, b: (np.dot(a, b) / 4 + 1.0) ** 3
    m = len(x)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    ref = sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / m ** 2
    assert kid.mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-10)
    mean, std = kid.kid_from_activations(x, y, num_subsets=3, subset_size=100)
    assert mean == pytest.approx(ref, rel=1e-10) and std == pytest.approx(0.0, abs=1e-12)
    # unbiased: same distribution -> near 0 (either sign); shifted -> clearly positive
    a, b = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    same, _ = kid.kid_from_activations(a, b, num_subsets=10, subset_size=200)
    shifted, _ = kid.kid_from_activations(a, b + 1.0, num_subsets=10, subset_size=200)
    assert abs(same) < 0.02 < shifted


# ---------------------------------------------------------------------------------------------- SWD


def _gamma(x, g):
    return np.clip(255.0 * (x / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)


def test_swd_zero_on_identical_sets_and_rises_with_colour_change(lesions):
    res = swd.pyramid_resolutions(64)
    assert res == [64, 32, 16]
    d_real = swd.descriptors(lesions, seed=0)
    assert d_real[0].shape == (48 * 128, 7, 7, 3)
    same = swd.swd_from_descriptors(d_real, d_real, res)
    assert all(v == 0.0 for v in same.values())
    # Protocol normalisation: a tone curve (gamma) is a colour change it sees, monotonically.
    gammas = [1.0, 1.6, 3.0]
    by_gamma = [swd.swd_from_descriptors(d_real, swd.descriptors(_gamma(lesions, g), 1), res)["swd/mean"]
                for g in gammas]
    assert by_gamma == sorted(by_gamma) and by_gamma[-1] > 2 * by_gamma[0]
    # With the real set's statistics, an additive colour cast is seen too, monotonically.
    shifts = [0.0, 0.6, 2.0]
    cast = lambda t: np.clip(lesions + t * np.array([40.0, -30.0, 20.0]), 0, 255).astype(np.uint8)
    by_cast = [swd.swd_from_descriptors(d_real, swd.descriptors(cast(t), 1), res, normalize_with="real")["swd/mean"]
               for t in shifts]
    assert by_cast == sorted(by_cast) and by_cast[-1] > 5 * by_cast[0]


def test_swd_protocol_normalisation_is_blind_to_per_channel_affine_change():
    rng = np.random.default_rng(2)
    x = rng.integers(60, 190, size=(8, 32, 32, 3)).astype(np.uint8)
    y = (x.astype(np.int32) + np.array([30, -40, 10])).astype(np.uint8)  # no clipping
    res = swd.pyramid_resolutions(32)
    sep = swd.swd_from_descriptors(swd.descriptors(x, 0), swd.descriptors(y, 0), res)
    real = swd.swd_from_descriptors(swd.descriptors(x, 0), swd.descriptors(y, 0), res, normalize_with="real")
    assert sep["swd/mean"] < 1e-2 < real["swd/mean"]


def test_swd_registry_entry_reports_levels_and_floor(lesions):
    out = metrics.compute("swd", lesions[:24], lesions[24:])
    assert set(out) == {"swd/64", "swd/32", "swd/16", "swd/mean", "swd_floor/64", "swd_floor/32",
                        "swd_floor/16", "swd_floor/mean"}
    assert out["swd/mean"] == pytest.approx(np.mean([out["swd/64"], out["swd/32"], out["swd/16"]]))


# ---------------------------------------------------------------------------------------------- MS-SSIM


def _gauss_window(size=11, sigma=1.5):
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma ** 2))
    g /= g.sum()
    return np.outer(g, g)


def _ref_msssim(x, y, weights, L=255.0):
    """Wang et al. 2003 directly: valid 11x11 Gaussian statistics, 2x2 average pooling, per channel."""
    c1, c2, w = (0.01 * L) ** 2, (0.03 * L) ** 2, _gauss_window()
    x, y = x.astype(np.float64), y.astype(np.float64)
    per_channel = []
    for c in range(3):
        a, b, val = x[..., c], y[..., c], 1.0
        for s, beta in enumerate(weights):
            f = lambda z: scipy.signal.correlate2d(z, w, mode="valid")
            mx, my = f(a), f(b)
            vx, vy, cxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
            cs = (2 * cxy + c2) / (vx + vy + c2)
            lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
            term = np.mean(lum * cs) if s == len(weights) - 1 else np.mean(cs)
            val *= max(term, 0.0) ** beta
            a = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).mean(axis=(1, 3))
            b = b.reshape(b.shape[0] // 2, 2, b.shape[1] // 2, 2).mean(axis=(1, 3))
        per_channel.append(val)
    return np.mean(per_channel)


def test_msssim_matches_direct_implementation_and_skimage(lesions):
    from skimage.metrics import structural_similarity
    x, y = lesions[0], lesions[1]
    pf = msssim.scales_for(64)
    assert len(pf) == 3 and sum(pf) == pytest.approx(1.0)
    assert len(msssim.scales_for(256)) == 5 and len(msssim.scales_for(32)) == 2
    got = msssim.ms_ssim(x[None], y[None])[0]
    assert got == pytest.approx(_ref_msssim(x, y, pf), abs=2e-5)
    single = msssim.ms_ssim(x[None], y[None], power_factors=(1.0,))[0]
    sk = structural_similarity(x, y, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False)
    assert single == pytest.approx(sk, abs=2e-5)
    assert msssim.ms_ssim(x[None], x[None])[0] == pytest.approx(1.0, abs=1e-6)


def test_msssim_pairs_detect_mode_collapse(lesions):
    pairs = msssim.random_pairs(10, 500, seed=0)
    assert np.all(pairs[:, 0] != pairs[:, 1]) and pairs.min() == 0 and pairs.max() == 9
    collapsed = np.repeat(lesions[:1], 8, axis=0)
    out = metrics.compute("msssim", lesions[:16], collapsed, num_pairs=32)
    assert out["msssim/fake"] == pytest.approx(1.0, abs=1e-6)
    assert out["msssim/real"] < 0.9


# ---------------------------------------------------------------------------------------------- histograms


def test_histogram_w1_matches_scipy_on_samples():
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, size=(4, 16, 16, 3)).astype(np.uint8)
    fake = np.clip(rng.normal(150, 30, size=(5, 16, 16, 3)), 0, 255).astype(np.uint8)
    h_r, h_f = histograms.color_histograms(real), histograms.color_histograms(fake)
    d = histograms.histogram_distances(h_r, h_f)
    for c, ch in enumerate("RGB"):
        ref = scipy.stats.wasserstein_distance(real[..., c].ravel(), fake[..., c].ravel())
        assert d[f"hist/rgb/{ch}/w1"] == pytest.approx(ref, rel=1e-10)
        p, q = h_r["rgb"][c], h_f["rgb"][c]
        js = scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2
        assert d[f"hist/rgb/{ch}/js"] == pytest.approx(js, abs=1e-10)
        m = (p + q) > 0
        assert d[f"hist/rgb/{ch}/chi2"] == pytest.approx(0.5 * np.sum((p[m] - q[m]) ** 2 / (p[m] + q[m])))
    # Lab: binned, so within a bin width (2 units for a*, b*) of the exact sample W1
    lab_r, lab_f = histograms.convert(real, "lab"), histograms.convert(fake, "lab")
    for c, ch in enumerate("Lab"):
        ref = scipy.stats.wasserstein_distance(lab_r[..., c].ravel(), lab_f[..., c].ravel())
        assert abs(d[f"hist/lab/{ch}/w1"] - ref) < 2.0
    same = histograms.histogram_distances(h_r, h_r)
    assert all(v == 0.0 for v in same.values())


def test_hue_w1_is_circular():
    p, q = np.zeros(100), np.zeros(100)
    p[1], q[98] = 1.0, 1.0  # hues 0.01 and 0.98: 0.03 apart on the circle
    assert histograms.wasserstein1(p, q, 0.01) == pytest.approx(0.97)
    assert histograms.wasserstein1(p, q, 0.01, circular=True) == pytest.approx(0.03)


def test_plot_histograms_writes_png(tmp_path, lesions):
    path = histograms.plot_histograms(lesions[:4], {"a": lesions[4:8], "b": lesions[8:12]},
                                      str(tmp_path / "h.png"), spaces=("rgb", "lab"))
    from PIL import Image
    assert Image.open(path).size[0] > 500


# ---------------------------------------------------------------------------------------------- memorization


def test_memorization_flags_a_generator_that_returns_training_images(lesions):
    train, heldout = lesions[:32], lesions[32:40]
    copier = train[np.random.default_rng(4).integers(0, 32, 12)]
    honest = lesions[40:48]
    ex = features.random_conv()
    bad = metrics.compute("memorization", train, copier, heldout=heldout, extractor=ex)
    good = metrics.compute("memorization", train, honest, heldout=heldout, extractor=ex)
    for space in ("pixel", "feature"):
        assert bad[f"mem/{space}/sample_nn_median"] == pytest.approx(0.0, abs=1e-6)
        assert bad[f"mem/{space}/frac_below_real_min"] == 1.0
        assert bad[f"mem/{space}/real_nn_median"] > 0.01
        assert good[f"mem/{space}/frac_below_real_min"] < 0.5
        assert good[f"mem/{space}/ratio"] > 0.5
    spaces = memorization.memorization_spaces(train, copier, None)  # leave-one-out reference
    assert spaces["pixel"].reference == "leave_one_out" and spaces["pixel"].real_dist.min() > 0
    grid = memorization.nn_grid(copier, train, spaces["pixel"], k=4)
    assert grid.shape == (2 + 66, 2 + 8 * 66, 3)


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(5)
    q, r = rng.standard_normal((7, 5)), rng.standard_normal((9, 5))
    d, i = memorization.nearest_neighbours(q, r)
    full = scipy.spatial.distance.cdist(q, r)
    np.testing.assert_allclose(d, full.min(1), rtol=1e-10)
    np.testing.assert_array_equal(i, full.argmin(1))
    d, i = memorization.nearest_neighbours(r, r, exclude_self=True)
    full = scipy.spatial.distance.cdist(r, r) + np.diag(np.full(9, np.inf))
    np.testing.assert_array_equal(i, full.argmin(1))


# ---------------------------------------------------------------------------------------------- extractors


def test_extractors_registry_fallback_and_cache(tmp_path, monkeypatch, lesions):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    lines = []
    ex = features.get_extractor("inception,random_conv", log=lines.append)
    assert ex.name == "random_conv" and len(lines) == 1 and "not downloading" in lines[0]
    a = ex(lesions[:5])
    assert a.shape == (5, 480) and np.array_equal(a, features.random_conv()(lesions[:5]))
    with pytest.raises(UserError):
        features.get_extractor("classifier:/nonexistent")
    calls = []
    key = {"content_hash": "abc", "extractor": ex.key, "split": "train", "count": 5}
    act, hit = feature_cache.cached_activations(key, lambda: calls.append(1) or a, str(tmp_path / "stats"))
    act2, hit2 = feature_cache.cached_activations(key, lambda: calls.append(1) or a, str(tmp_path / "stats"))
    assert (hit, hit2, len(calls)) == (False, True, 1) and np.array_equal(act, act2)
    # the registry entry is the Frechet distance of the extractor's features (reference: the trace of
    # sqrt(S1 S2) as the sum of the square roots of its eigenvalues, real and >= 0 for PSD S1, S2)
    out = metrics.compute("fid", lesions[:20], lesions[20:40], extractor=ex)
    x, y = ex(lesions[:20]).astype(np.float64), ex(lesions[20:40]).astype(np.float64)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root_trace = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    ref = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * root_trace
    assert out["fid"] == pytest.approx(ref, rel=1e-4)
    assert metrics.compute("fid", None, lesions[20:40], extractor=ex, act_real=x)["fid"] == pytest.approx(ref, rel=1e-4)


def test_classifier_extractor_uses_penultimate_layer(tmp_path, lesions):
    import keras
    inp = keras.Input((32, 32, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3)(inp))
    h = keras.layers.Dense(5, name="penultimate")(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    path = str(tmp_path / "clf.keras")
    model.save(path)
    ex = features.get_extractor(f"classifier:{path}")
    assert ex(lesions[:3]).shape == (3, 5)
    # a SavedModel with a 'features' endpoint (float32 [-1, 1] in), found through its run folder
    import tensorflow as tf
    penultimate = keras.Model(inp, h)
    archive = keras.export.ExportArchive()
    archive.track(penultimate)
    archive.add_endpoint("features", tf.function(lambda images: {"features": penultimate(images)}),
                         input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="images")])
    archive.write_out(str(tmp_path / "run" / "saved_model"), verbose=False)
    sm = features.get_extractor(f"classifier:{tmp_path / 'run'}")
    np.testing.assert_allclose(sm(lesions[:3]), ex(lesions[:3]), rtol=1e-5, atol=1e-6)


def test_registry_names_and_unknown():
    assert set(metrics.METRICS) == {"histograms", "swd", "msssim", "fid", "kid", "precision_recall",
                                    "memorization"}
    with pytest.raises(ValueError, match="choose from"):
        metrics.compute("nope", None, None)


def test_every_registered_metric_reports_its_headline_and_floor():
    rng = np.random.default_rng(5)
    real, fake = (rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    ex = features.random_conv()
    for name, m in metrics.METRICS.items():
        assert m.name == name and m.direction in metrics.DIRECTIONS, name
        out = m(real, fake, extractor=ex, num_pairs=4, num_subsets=2)
        assert m.headline in out and np.isfinite(out[m.headline]), (name, sorted(out))
        assert m.floor is None or m.floor in out, (name, m.floor)
    with pytest.raises(ValueError, match="direction"):
        metrics.Metric("x", fid.fid, "closer", "fid")  # closer to what: no floor


def test_online_evaluator_ranks_closer_samples_better(lesions):
    ev = online.OnlineEvaluator(lesions[:24])
    same, good, bad = ev(lesions[:24]), ev(lesions[24:48]), ev(_gamma(lesions[24:48], 2.5))
    collapsed = ev(np.repeat(lesions[24:25], 24, axis=0))  # one image 24 times: realistic, no coverage
    levels = {f"eval/swd_x/{r}" for r in swd.pyramid_resolutions(lesions.shape[1])}
    assert set(good) == {"eval/swd", "eval/swd_floor", "eval/kid", "eval/precision", "eval/recall",
                         "eval/color_w1", "eval/color_w1_floor"} | levels
    # per level, as multiples of that level's floor: blur moves the finest level, not the coarsest
    blurred = ev(np.clip(scipy.ndimage.gaussian_filter(lesions[24:48].astype(np.float32), (0, 1.5, 1.5, 0)), 0, 255)
                 .astype(np.uint8))
    fine, coarse = f"eval/swd_x/{lesions.shape[1]}", "eval/swd_x/16"
    assert blurred[fine] > 2 * good[fine] and blurred[coarse] < 1.5 * good[coarse]
    assert set(online.DIRECTIONS) <= set(good) and online.DIRECTIONS["eval/recall"] == "higher"
    assert good["eval/swd"] < bad["eval/swd"] and good["eval/kid"] < bad["eval/kid"]
    # precision / recall (higher is better) on the KID features
    assert same["eval/precision"] == 1.0 and same["eval/recall"] == 1.0
    assert good["eval/precision"] >= 0.8 and good["eval/recall"] >= 0.75
    assert bad["eval/precision"] < 0.5 and bad["eval/recall"] < 0.5
    assert collapsed["eval/precision"] >= 0.9 and collapsed["eval/recall"] <= 0.2
    # colour W1: 0 against itself, about the real-vs-real floor for held-out real, far above for gamma
    floor = good["eval/color_w1_floor"]
    assert same["eval/color_w1"] == pytest.approx(0.0, abs=1e-9)
    assert all(r["eval/color_w1_floor"] == floor for r in (same, bad, collapsed)) and 0 < floor < 10
    assert good["eval/color_w1"] < 2 * floor and bad["eval/color_w1"] > 5 * good["eval/color_w1"]


def test_a_registered_metric_reaches_both_loops_and_the_report(lesions, tmp_path):
    # the extension point: one registry entry (here a throwaway one) and no other edit
    import types
    from melano_tf.evaluation import context, evaluate, report
    bright = lambda s: float(s.images.mean())  # noqa: E731
    hooks = types.SimpleNamespace(
        evaluate=lambda real, fake, s: {"brightness": bright(fake)},
        reference=lambda real, s: {"brightness_real": bright(real)},
        online=lambda real, fake, s: {"eval/brightness": bright(fake), "eval/brightness_floor": bright(real)},
        ONLINE_KEYS=("eval/brightness",))
    m = metrics.Metric("mean_brightness", lambda real, fake, **_: {"brightness": float(np.mean(fake))}, "closer",
                       "brightness", "brightness_real", hooks)
    real, fake = lesions[:12], _gamma(lesions[12:24], 2.5)
    metrics.METRICS[m.name] = m
    try:
        scores = online.OnlineEvaluator(real)(fake)
        assert scores["eval/brightness"] == pytest.approx(fake.mean()) and "eval/swd" in scores
        assert scores["eval/brightness_floor"] == pytest.approx(real.mean())
        real_set = context.ImageSet(real, features.random_conv())
        settings = context.Settings(msssim_pairs=4, kid_subsets=2)
        ref = metrics.run_hooks("reference", real_set, settings)
        assert ref["brightness_real"] == pytest.approx(real.mean()) and "swd_floor/mean" in ref
        mets, images = evaluate.score_run(real_set, context.ImageSet(fake, real_set.extractor), settings,
                                          str(tmp_path), "run")
        assert mets["brightness"] == pytest.approx(fake.mean()) and "fid" in mets and "mem/pixel/ratio" in mets
        assert images["nn_pixel"] == "run/nn_pixel.png" and (tmp_path / "run" / "nn_distances.png").is_file()
        runs = {n: {"scheme": "dcgan", "metrics": {"brightness": v}} for n, v in (("a", 100.0), ("b", 120.0))}
        table = report.metrics_table({"runs": runs, "real": {"metrics": {"brightness_real": 118.0}}})
        assert "Other metrics" in table and "registry metric mean_brightness" in table
        assert "<td class='best'>120.0000</td>" in table and "118.0000" in table
    finally:
        del metrics.METRICS[m.name]
    assert "Other metrics" not in report.metrics_table({"runs": runs, "real": {"metrics": {}}})


def test_online_color_w1_is_mean_of_rgb_and_lab_channel_w1(lesions):
    from skimage import color
    a, b = lesions[:24], _gamma(lesions[24:48], 2.5)
    ref = []
    for to_values in (lambda x: x.reshape(-1, 3).astype(np.float64),
                      lambda x: color.rgb2lab(x / 255.0).reshape(-1, 3)):
        va, vb = to_values(a), to_values(b)
        ref += [scipy.stats.wasserstein_distance(va[:, c], vb[:, c]) for c in range(3)]
    h = [histograms.color_histograms(x, histograms.COLOR_SPACES) for x in (a, b)]
    assert histograms.color_w1(*h) == pytest.approx(np.mean(ref), abs=0.05)  # Lab binned at 0.8-2 units


def test_inception_extractor_loads_local_weights_file(tmp_path, monkeypatch, lesions):
    import keras
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                           input_shape=(299, 299, 3))
    weights = tmp_path / "models" / "inception.weights.h5"
    weights.parent.mkdir()
    model.save_weights(str(weights))
    ex = features.get_extractor("inception,random_conv", inception_weights=str(weights), log=print)
    assert ex.name == "inception" and ex.key.startswith("inception-")
    act = ex(lesions[:2])
    np.testing.assert_allclose(act, model(features._to_float(lesions[:2], 299)).numpy(), rtol=1e-4, atol=1e-5)
    assert act.shape == (2, 2048)
    with pytest.raises(UserError, match="no such file"):
        features.get_extractor("inception", inception_weights=str(tmp_path / "missing.h5"))


def test_the_metrics_package_imports_no_training_serving_or_orchestration_code(fresh_python):
    """``import melano_tf.metrics`` pulls in only metrics, the pyramid ops and small helpers: no
    GAN, training loop, SavedModel client, classifier or evaluation orchestration (a fresh process)."""
    import json
    proc = fresh_python("import json, sys, melano_tf.metrics; "
                        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('melano_tf'))))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    allowed = ("melano_tf.metrics", "melano_tf.ops")
    extra = [m for m in loaded if not m.startswith(allowed)
             and m not in ("melano_tf", "melano_tf.errors", "melano_tf.fileio", "melano_tf.viz")]
    assert "melano_tf.metrics.swd" in loaded and extra == []
