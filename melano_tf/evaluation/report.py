"""``report.html``: one self-contained page (PNG images embedded as base64) from metrics.json.

A metrics table with the runs side by side (registry metrics it does not name get a generic row under
"Other metrics": their headline, direction and floor) and the real-set reference in the last column (the
best run per row in bold), then the sample grids, the colour-histogram overlay and, per run, the
nearest-neighbour grids and distance histograms.
"""

from __future__ import annotations

import base64
import html
import io
import os

from melano_tf import fileio

# (key, label, better, reference key or constant, how to format, explanation)
#   better: "lower" | "higher" | "closer" (to the reference) | None
_ROWS = [
    ("Realism and coverage", None),
    ("fid", "FID", "lower", "fid_floor", "f2", "Frechet distance of feature statistics (Heusel 2017). "
     "Reference: two halves of the real set."),
    ("kid", "KID x 1e3", "lower", None, "kid",
     "Unbiased MMD^2, cubic kernel (Binkowski 2018), mean +- std over subsets."),
    ("precision", "precision (realism)", "closer", "precision_real", "f2",
     "Share of samples inside the real k-NN manifold, k=3 (Kynkaanniemi 2019). Reference: two real halves."),
    ("recall", "recall (coverage)", "closer", "recall_real", "f2",
     "Share of real images inside the samples' k-NN manifold. Reference: two real halves."),
    ("swd/mean", "SWD x 1e3, mean", "lower", "swd_floor/mean", "f1",
     "Sliced Wasserstein over a Laplacian pyramid, Progressive GAN protocol. Reference: real vs real floor."),
    ("swd/*", "SWD x 1e3, {level} px", "lower", "swd_floor/{level}", "f1", "Per pyramid level."),
    ("swd_realnorm/mean", "SWD x 1e3, real-normalised", "lower", "swd_realnorm_floor/mean", "f1",
     "Descriptors normalised with the real set's channel statistics: also sees colour casts."),
    ("Diversity", None),
    ("msssim/fake", "MS-SSIM of random pairs", "closer", "msssim/real", "f3",
     "Lower is more diverse; should match real pairs (reference). Near 1: mode collapse."),
    ("Colour statistics (the paper's)", None),
    ("hist/lab/L/w1", "W1 Lab L*", "lower", None, "f2", "Earth mover's distance of the L* histograms (L* units)."),
    ("hist/lab/a/w1", "W1 Lab a*", "lower", None, "f2", "a* units."),
    ("hist/lab/b/w1", "W1 Lab b*", "lower", None, "f2", "b* units."),
    ("hist/rgb/R/w1", "W1 R", "lower", None, "f2", "8-bit levels."),
    ("hist/rgb/G/w1", "W1 G", "lower", None, "f2", "8-bit levels."),
    ("hist/rgb/B/w1", "W1 B", "lower", None, "f2", "8-bit levels."),
    ("hist/hsv/H/w1", "W1 hue (circular)", "lower", None, "f4", "Hue in turns [0, 1)."),
    ("hist/hsv/S/w1", "W1 saturation", "lower", None, "f4", ""),
    ("hist/rgb/mean/js", "JS divergence, RGB mean", "lower", None, "f4", "Jensen-Shannon in bits, mean of channels."),
    ("hist/hsv/mean/js", "JS divergence, HSV mean", "lower", None, "f4", ""),
    ("hist/lab/mean/js", "JS divergence, Lab mean", "lower", None, "f4", ""),
    ("hist/lab/mean/chi2", "Chi-square, Lab mean", "lower", None, "f4", "Symmetric chi-square, mean of channels."),
    ("Memorization", None),
    ("mem/pixel/frac_below_real_min", "Samples closer to training than any real (pixels)", "lower", None, "pct",
     "Fraction of samples nearer to a training image than every held-out real image is. Copies: 100%."),
    ("mem/pixel/ratio", "NN distance ratio, pixels", None, 1.0, "f2",
     "Median sample->train over median real->train nearest-neighbour distance; well below 1 is suspicious."),
    ("mem/pixel/sample_nn_median", "Median NN distance, pixels (RMS)", None, "@mem/pixel/real_nn_median", "f4",
     "Reference: held-out real -> train."),
    ("mem/feature/frac_below_real_min", "Samples closer to training than any real (features)", "lower", None,
     "pct", ""),
    ("mem/feature/ratio", "NN distance ratio, features", None, 1.0, "f2", ""),
]


def _fmt(v, how: str, std=None) -> str:
    if v is None:
        return "&ndash;"
    if how == "kid":
        s = f"{v * 1e3:.2f}"
        return s + (f" &plusmn; {std * 1e3:.2f}" if std is not None else "")
    if how == "pct":
        return f"{100 * v:.0f}%"
    return f"{v:.{int(how[1:])}f}"


#: Embedded images larger than this are re-encoded as JPEG (quality 90, at most 1200 px wide) so
#: that a report of several 256 px runs stays a few MB; the PNG files beside it keep full quality.
MAX_EMBED_BYTES = 300_000
MAX_EMBED_WIDTH = 1200


def _img(path: str, alt: str, cls: str = "") -> str:
    if not os.path.isfile(path):
        return f'<p class="missing">{html.escape(alt)}: not written</p>'
    with open(path, "rb") as f:
        data, mime = f.read(), "image/png"
    if len(data) > MAX_EMBED_BYTES:
        from PIL import Image
        im = Image.open(io.BytesIO(data)).convert("RGB")
        if im.width > MAX_EMBED_WIDTH:
            im = im.resize((MAX_EMBED_WIDTH, round(im.height * MAX_EMBED_WIDTH / im.width)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        data, mime = buf.getvalue(), "image/jpeg"
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" title="{html.escape(alt)}" src="data:{mime};base64,{b64}">'


def _registry_rows():
    """A row per registry metric whose headline :data:`_ROWS` does not show (its headline, direction, floor)."""
    from melano_tf.metrics import METRICS
    known = {row[0] for row in _ROWS}
    extra = [(m.headline, m.headline, m.direction, m.floor, "f4", f"registry metric {m.name}")
             for m in METRICS.values() if m.headline not in known]
    return [("Other metrics", None)] + extra if extra else []


def _expand(rows, runs: dict, ref: dict):
    """Expand the ``swd/*`` row into one row per pyramid level present in the results."""
    levels = sorted({int(k.split("/")[1]) for r in runs.values() for k in r["metrics"]
                     if k.startswith("swd/") and k.split("/")[1].isdigit()}, reverse=True)
    for row in rows:
        if len(row) > 2 and row[0] == "swd/*":
            key, label, better, refk, how, doc = row
            for lv in levels:
                yield (f"swd/{lv}", label.format(level=lv), better, refk.format(level=lv), how, doc)
        else:
            yield row


def metrics_table(result: dict) -> str:
    runs, ref = result["runs"], result["real"]["metrics"]
    names = list(runs)
    head = "".join(f"<th>{html.escape(n)}<br><span class='scheme'>{html.escape(runs[n]['scheme'])}</span></th>"
                   for n in names)
    lines = [f"<table class='metrics'><thead><tr><th>metric</th>{head}<th>real reference</th></tr></thead><tbody>"]
    for row in _expand(_ROWS + _registry_rows(), runs, ref):
        if row[1] is None:
            lines.append(f"<tr class='group'><td colspan='{len(names) + 2}'>{html.escape(row[0])}</td></tr>")
            continue
        key, label, better, refk, how, doc = row
        vals = [runs[n]["metrics"].get(key) for n in names]
        if all(v is None for v in vals):
            continue
        if isinstance(refk, str) and refk.startswith("@"):
            # per-run reference (same for all runs): take the first run's value
            refv = next((runs[n]["metrics"].get(refk[1:]) for n in names), None)
        elif isinstance(refk, str):
            refv = ref.get(refk)
        else:
            refv = refk
        best = None
        present = [(i, v) for i, v in enumerate(vals) if v is not None]
        score = {"lower": lambda v: v, "higher": lambda v: -v,
                 "closer": lambda v: abs(v - refv) if refv is not None else None}.get(better)
        if len(present) > 1 and score is not None and score(present[0][1]) is not None:
            ranked = sorted(present, key=lambda t: score(t[1]))
            if score(ranked[0][1]) < score(ranked[1][1]):  # a tie marks no run
                best = ranked[0][0]
        cells = []
        for i, (n, v) in enumerate(zip(names, vals)):
            std = runs[n]["metrics"].get("kid_std") if how == "kid" else None
            text = _fmt(v, how, std)
            cells.append(f"<td class='best'>{text}</td>" if i == best else f"<td>{text}</td>")
        ref_text = _fmt(refv, how) if refv is not None else ""
        lines.append(f"<tr><td title='{html.escape(doc)}'>{html.escape(label)}"
                     f"<div class='doc'>{html.escape(doc)}</div></td>{''.join(cells)}"
                     f"<td class='ref'>{ref_text}</td></tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222;
       max-width: 1400px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.settings { color: #555; font-size: 13px; }
.note { background: #fff4d6; border: 1px solid #e8c96b; padding: 6px 10px; font-size: 13px; }
table.metrics { border-collapse: collapse; font-size: 13px; margin-top: 10px; }
table.metrics th, table.metrics td { border: 1px solid #ddd; padding: 4px 10px; text-align: right;
                                     vertical-align: top; }
table.metrics td:first-child, table.metrics th:first-child { text-align: left; max-width: 420px; }
table.metrics tr.group td { background: #f0f3f7; font-weight: 600; text-align: left; }
td.best { font-weight: 700; background: #e7f6e7; } td.ref { color: #555; font-style: italic; }
.doc { color: #777; font-size: 11px; } .scheme { color: #777; font-weight: normal; font-size: 11px; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.cell { flex: 1 1 260px; max-width: 420px; } .cell h3 { font-size: 14px; margin: 6px 0; }
img.grid { width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
img.plot { max-width: 100%; } img.pairs { width: 100%; image-rendering: pixelated; }
"""


def render(result: dict, out: str) -> str:
    s, real, runs = result["settings"], result["real"], result["runs"]
    p = lambda rel: os.path.join(out, rel)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>melano_tf evaluation</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>melano_tf evaluation</h1>",
             f"<p class='settings'>{len(runs)} run(s), {s['num_samples']} samples each, against "
             f"{real['train_images']} real training images ({real['heldout_images']} held out) at "
             f"{real['resolution']} px; features <b>{html.escape(s['features'])}</b>; seed {s['seed']}; "
             f"data {html.escape(real['cache_dir'])} (hash {real['content_hash'][:12]}); "
             f"{result['seconds']['total']:.0f} s.</p>"]
    if s.get("features_note"):
        parts.append(f"<p class='note'>{html.escape(s['features_note'])}: FID/KID and feature-space "
                     "memorization are comparable only between runs evaluated with the same extractor.</p>")
    parts.append("<p class='settings'>Compare FID and SWD only at equal sample counts; bold = best run per row "
                 "(for MS-SSIM: closest to real pairs).</p>")
    parts.append("<h2>Metrics</h2>" + metrics_table(result))
    parts.append("<h2>Samples</h2><div class='row'>")
    parts.append(f"<div class='cell'><h3>real (training)</h3>"
                 f"{_img(p(real['images']['samples']), 'real', 'grid')}</div>")
    for name, r in runs.items():
        parts.append(f"<div class='cell'><h3>{html.escape(name)} ({html.escape(r['scheme'])})</h3>"
                     f"{_img(p(r['images']['samples']), name + ' samples', 'grid')}</div>")
    parts.append("</div><h2>Colour histograms</h2>")
    parts.append(_img(p(real["images"]["histograms"]), "colour histograms", "plot"))
    parts.append("<h2>Memorization: closest samples (left) and their nearest training image (right)</h2>")
    for name, r in runs.items():
        parts.append(f"<h3>{html.escape(name)}</h3><div class='row'>")
        for key, title in (("nn_pixel", "pixel space (64 px)"), ("nn_feature", "feature space")):
            parts.append(f"<div class='cell'><h3>{title}</h3>"
                         f"{_img(p(r['images'][key]), name + ' ' + title, 'pairs')}</div>")
        parts.append(f"<div class='cell' style='max-width:760px;flex-basis:520px'>"
                     f"{_img(p(r['images']['nn_distances']), name + ' distances', 'plot')}</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, out: str) -> str:
    """Write ``out/report.html`` (atomically); returns its path."""
    return fileio.write_text_atomic(os.path.join(out, "report.html"), render(result, out))
