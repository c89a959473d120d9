"""The imbalance experiment's report: the results table (mean ± std over seeds), the paired bootstrap
differences to the reference regime with their verdicts, ``results.md`` and the figure of real, generated
and filtered melanoma."""

from __future__ import annotations

import numpy as np

from melano_tf import viz
from melano_tf.classify import metrics as cmetrics
from melano_tf.classify.experiment_config import ExperimentConfig

#: Table columns: read-out key, label (threshold chosen on validation, all measured on test).
METRICS = (("balanced_accuracy_at_t", "balanced acc. @t"), ("sensitivity_at_t", "sensitivity @t"),
           ("specificity_at_t", "specificity @t"), ("sensitivity_at_spec90", "sens. @spec 0.90"),
           ("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC"))
#: The verdict against the reference uses these (the issue's targets).
PRIMARY = ("pr_auc", "sensitivity_at_spec90")
REFERENCE = "oversample"


def mean_std(values) -> tuple[float | None, float | None]:
    """(mean, sample std with ddof=1; 0 for one value) of the non-None values."""
    v = np.array([x for x in values if x is not None], np.float64)
    if len(v) == 0:
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _row(run: dict) -> dict:
    return run.get("readout", run)


def table(results: dict, regimes) -> str:
    """Markdown table: one row per regime, ``mean ± std`` per read-out metric over seeds."""
    head = "| regime | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for r in regimes:
        runs = results.get(r, [])
        cells = []
        for key, _ in METRICS:
            m, s = mean_std([_row(run).get(key) for run in runs])
            cells.append("n/a" if m is None else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_differences(results: dict, regimes, reference: str = REFERENCE, num_resamples: int = 10000,
                       seed: int = 0) -> dict:
    """regime -> metric -> ``paired_bootstrap`` of (regime - reference) over the seeds both have."""
    ref = {run["seed"]: _row(run) for run in results.get(reference, [])}
    out = {}
    for r in regimes:
        if r == reference or not ref:
            continue
        runs = {run["seed"]: _row(run) for run in results.get(r, [])}
        common = [s for s in runs if s in ref]
        out[r] = {key: cmetrics.paired_bootstrap([runs[s].get(key) for s in common],
                                                 [ref[s].get(key) for s in common],
                                                 num_resamples=num_resamples, seed=seed)
                  for key, _ in METRICS}
    return out


def overall_verdict(diffs: dict) -> str:
    """beats: beats on a primary metric and loses on none; loses: the reverse; else ties."""
    v = [cmetrics.verdict(diffs[k]) for k in PRIMARY]
    if "beats" in v and "loses" not in v:
        return "beats"
    if "loses" in v and "beats" not in v:
        return "loses"
    return "ties"


def _interval(d: dict) -> str:
    if d["mean"] is None:
        return "n/a"
    return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def verdict_line(regime: str, diffs: dict, reference: str = REFERENCE) -> str:
    labels = dict(METRICS)
    parts = ", ".join(f"{labels[k]} {_interval(diffs[k])} ({cmetrics.verdict(diffs[k])})" for k in PRIMARY)
    return f"- `{regime}` **{overall_verdict(diffs)}** `{reference}`: {parts}"


def difference_table(diffs: dict) -> str:
    head = "| regime - oversample | " + " | ".join(label for _, label in METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 1)]
    for r, d in diffs.items():
        lines.append(f"| {r} | " + " | ".join(_interval(d[k]) for k, _ in METRICS) + " |")
    return "\n".join(lines)


def section_figure(path: str, sections: list[tuple[str, np.ndarray]], cols: int = 8) -> str:
    """One PNG: a titled grid per section (real / generated / filtered images)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    grids = [(title, viz.grid(imgs, cols=cols)) for title, imgs in sections if len(imgs)]
    heights = [g.shape[0] for _, g in grids]
    fig, axes = plt.subplots(len(grids), 1, figsize=(8, 1.0 + sum(heights) / 60.0),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (title, g) in zip(axes[:, 0], grids):
        ax.imshow(g, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return viz.save_figure(fig, path, dpi=100)


def results_header(conf: ExperimentConfig, backbone: str, train_counts, validation_counts, test_counts) -> str:
    """The paragraph above the table: the splits' class counts, the classifier, the generators, the read-out."""
    return (f"Imbalance experiment: melanoma 1:{conf.imbalance:g} in training "
            f"({train_counts}), validation {validation_counts}, test "
            f"{test_counts}, {conf.resolution} px, {backbone} {conf.classifier_steps} "
            f"steps, seeds {list(conf.seeds)}; generators: {conf.gan.scheme} {conf.gan.train_steps} steps on "
            f"{conf.gan_data}, GAN seeds {list(conf.gan_seeds)}"
            + (" (deterministic)" if conf.deterministic else "")
            + ". Decision threshold chosen per run on the validation split (max. balanced accuracy), "
            "everything measured on the test split; mean ± std (ddof=1) over seeds.")


def results_markdown(header: str, tab: str, diffs: dict, num_bootstrap: int, filter_info: dict, filtered,
                     with_images: bool) -> str:
    """``results.md``: header, table, the verdict lines and differences to ``REFERENCE``, the filter's
    acceptance per generator (``filtered``: the generator names) and the images' link."""
    text = header + "\n\n" + tab + "\n"
    if diffs:
        text += (f"\nPaired over seeds, regime minus `{REFERENCE}`: mean difference [95% bootstrap interval, "
                 f"{num_bootstrap} resamples of the seeds]; verdict on "
                 f"{' and '.join(dict(METRICS)[k] for k in PRIMARY)} "
                 "(beats: interval above 0 on one and below on none; loses: the reverse; else ties):\n\n"
                 + "\n".join(verdict_line(r, d) for r, d in diffs.items()) + "\n\n" + difference_table(diffs) + "\n")
    if filter_info:
        text += (f"\nFilter: melanoma probability >= {filter_info['threshold']:.3f} under an `oversample` "
                 "classifier of the real training split (threshold chosen on validation); accepted: "
                 + ", ".join(f"{g} {filter_info[g]['accepted']}/{filter_info[g]['candidates']}" for g in filtered)
                 + "\n")
    if with_images:
        text += "\n![real, generated and filtered melanoma](images.png)\n"
    return text
