"""The campaign report's "Clustering" section (``section``): per snapshot, one figure of the
multipoles' ensemble and the correlation matrices, one panel row per sample, and a table.

What it shows is the covariance file's content (``covmocks.covariance.ensemble``): read from
``covariance.hdf5`` where that file is newer than every clustering record, else assembled
from the records by ``covariance.ensemble.compute``, as ``covmocks covariance`` would write it.
"""

from __future__ import annotations

import os

import numpy as np

from covmocks.core.errors import CovmocksError
from covmocks.covariance import ensemble, verdict
from covmocks.report.figures import _plt, _png, esc, img, table

_COLOURS = {0: "tab:blue", 2: "tab:orange", 4: "tab:green"}
SHOWN = ("real", "redshift")  # redshift: one line of sight (covmocks.covariance.ensemble)


def _content(campaign, plan, cache: dict | None) -> tuple[dict | None, str]:
    """(the covariance content, where it came from); (None, "") without any record."""
    from covmocks.workflow.plan import dir_names

    layout = campaign.layout
    names = dir_names(layout.qa)
    records = [layout.clustering(t.task_id) for t in plan.tasks]
    records = [p for p in records if p.name in names]
    if not records:
        return None, ""
    path = layout.covariance
    try:
        built = path.stat().st_mtime_ns
        if all(os.stat(p).st_mtime_ns < built for p in records):
            return ensemble.read(path), f"read from {path.name}"
    except (OSError, KeyError, ValueError):
        pass
    return ensemble.compute(campaign, plan, cache=cache), (
        f"assembled from the records ({path.name} absent, or older than a record)"
    )


def section(campaign, plan=None, *, cache: dict | None = None) -> str | None:
    """HTML of the report's "Clustering" section; None when no box has a clustering record.
    ``cache``: ``covariance.ensemble.load``'s, kept between calls (``report.page.watch``)."""
    from covmocks.workflow.plan import make_plan

    plan = plan or make_plan(campaign)
    try:
        tree, source = _content(campaign, plan, cache)
    except CovmocksError as exc:
        return f"<p class=bad>No covariance: {esc(exc)}</p>"
    if tree is None:
        return None
    a = tree["attrs"]
    skipped = a.get("skipped") or []
    note = (f" {a['n_boxes_skipped']} boxes skipped, record unreadable "
            f"({esc(', '.join(skipped[:10]))}{', ...' if a['n_boxes_skipped'] > 10 else ''})."
            if a["n_boxes_skipped"] else "")  # fmt: skip
    head = (f"<p>{a['n_boxes_used']} boxes with a clustering record, "
            f"{a['n_boxes_missing']} without one yet; {esc(source)}.{note}</p>")  # fmt: skip
    if not a["n_boxes_used"]:
        return head
    parts = [head]
    dk = (a.get("estimator") or {}).get("dk_fundamentals")
    for zname in sorted((n for n in tree if n.startswith("z")), key=lambda n: float(n[1:])):
        samples = {n: g for n, g in tree[zname].items()
                   if isinstance(g, dict) and n not in ("attrs", ensemble.JOINT)}  # fmt: skip
        k = np.asarray(tree[zname]["k_mid"])
        parts.append(f"<h3>z={esc(zname[1:])}</h3>"
                     + img(_figure(zname[1:], k, samples), f"clustering at {zname}")
                     + _table(samples, tree[zname]["n_modes"], dk))  # fmt: skip
    shot = "subtracted" if a.get("shot_noise_subtracted") else "not subtracted"
    parts.append(
        "<p class=note>Left: k P_ell(k) in (Mpc/h)^2 against k in h/Mpc, the mean over the "
        "boxes and, shaded, the box-to-box standard deviation (one box's scatter, not the "
        "error of the mean); real space, and redshift space along one line of sight (the "
        f"mean of the x, y, z measurements; covariance (C_x + C_y + C_z)/3). Shot noise {shot}. "
        "Right: the correlation matrices of the data vector [P0(k), P2(k), P4(k)] (p = 3 nk). "
        "Below completeness: boxes whose sample reaches below the box's completeness limit "
        "(still used). Hartlap: (N - p - 2)/(N - 1), the inverse covariance's correction. "
        "var/Gaussian: the measured variances over the Gaussian reference's in the low-k bins "
        "(first quarter), against the range N realizations allow; near 1 for a Gaussian field. "
        "Convergence: the half-versus-all diagonal ratio against its noise level sqrt(2/N).</p>"
    )
    return "".join(parts)


def _figure(label: str, k: np.ndarray, samples: dict) -> str:
    """One row of panels per sample: k P_ell real and redshift space, the two correlations."""
    plt = _plt()
    nk = len(k)
    fig, axes = plt.subplots(len(samples), 4, figsize=(16, 3.4 * len(samples)), squeeze=False)
    for row, (name, g) in zip(axes, samples.items(), strict=True):
        for ax, stat in zip(row[:2], SHOWN, strict=True):
            s = g[stat]
            std = np.sqrt(np.diag(s["covariance"]))
            for i, ell in enumerate(ensemble.MULTIPOLES):
                mean, sd = k * s["mean"][i * nk : (i + 1) * nk], k * std[i * nk : (i + 1) * nk]
                ax.plot(k, mean, color=_COLOURS[ell], label=rf"$\ell={ell}$")
                ax.fill_between(k, mean - sd, mean + sd, color=_COLOURS[ell], alpha=0.3, lw=0)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xlabel(r"$k$ [$h$/Mpc]")
            ax.set_ylabel(r"$k P_\ell(k)$ [(Mpc/$h$)$^2$]")
            ax.set_title(f"{name}, {stat} space, z={label}, N={s['attrs']['n_realizations']}")
            ax.legend(fontsize=8)
        for ax, stat in zip(row[2:], SHOWN, strict=True):
            shown = ax.imshow(g[stat]["correlation"], cmap="RdBu_r", vmin=-1, vmax=1,
                              interpolation="nearest")  # fmt: skip
            for edge in (nk - 0.5, 2 * nk - 0.5):
                ax.axhline(edge, color="k", lw=0.6)
                ax.axvline(edge, color="k", lw=0.6)
            ticks = [(i + 0.5) * nk - 0.5 for i in range(len(ensemble.MULTIPOLES))]
            names = [f"P{ell}" for ell in ensemble.MULTIPOLES]
            ax.set_xticks(ticks, names)
            ax.set_yticks(ticks, names)
            ax.set_title(f"{name}: correlation, {stat} space")
            fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _png(fig)


def _selection(a: dict) -> str:
    """``sfr >= 0.4503 (ensemble n(>=x) = 0.01 (h/Mpc)^3)``, or ``all``."""
    if a.get("select") in (None, "all"):
        return str(a.get("select", ""))
    origin = a.get("threshold_origin", "")
    return f"{a['select']} >= {float(a['threshold']):.4f}" + (f" ({origin})" if origin else "")


def _gaussian(stat: dict, n_modes, dk) -> str:
    c = verdict.gaussian_check(stat, n_modes, dk)
    if c is None:
        return "n/a"
    flag = f" ({c['outside']} of {c['checked']} outside)" if c["outside"] else ""
    return f"{c['low']:.2f}..{c['high']:.2f}{flag}"


def _table(samples: dict, n_modes, dk) -> str:
    rows = []
    for name, g in samples.items():
        a = g["attrs"]
        selection = _selection(a)
        worst = [_worst(g[s]["diag_ratio_half"]) for s in SHOWN]
        hartlap = g["redshift"]["attrs"]["hartlap"]
        rows.append([name, selection or "n/a", a["n_realizations"], a["n_below_completeness"],
                     f"{a.get('mean_number_density_h3_mpc3', np.nan):.3g}",
                     f"{a.get('mean_shot_noise_mpc3_h3', np.nan):.4g}",
                     "NaN (N <= p + 2)" if not np.isfinite(hartlap) else f"{hartlap:.3f}",
                     " / ".join(f"{w:.3f}" for w in worst),
                     " / ".join(_gaussian(g[s], n_modes, dk) for s in SHOWN),
                     g["redshift"]["attrs"].get("convergence", "")])  # fmt: skip
    header = ["sample", "selection", "boxes", "below completeness", "mean n [(Mpc/h)^-3]",
              "mean shot noise [(Mpc/h)^3]", "Hartlap", "half/all real / redshift",
              "low-k var/Gaussian real / redshift", "convergence"]  # fmt: skip
    return table(header, rows, left=2)


def _worst(ratio: np.ndarray) -> float:
    d = np.abs(np.asarray(ratio) - 1.0)
    d = d[np.isfinite(d)]
    return float(d.max()) if len(d) else float("nan")
