"""The figures of the campaign report (``covmocks.report.page``), the Madau & Dickinson (2014)
reference curves, and the HTML of the science sections. Figures: matplotlib with the Agg
backend, each returned as a base64 PNG for an ``<img src="data:...">``. Inputs are the
report's per-snapshot ensembles (``report.records.Ensemble``); masses log10(Msun), no h."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from covmocks.catalog.summary import MHALO_EDGES, MSTAR_EDGES, SFR_EDGES
from covmocks.core.layout import redshift_label
from covmocks.report.outliers import NUMBER_DENSITY, SMF_MIN_COUNT
from covmocks.report.reference import (
    MD14_RETURN_FRACTION,
    MD14_SALPETER_TO_CHABRIER,
    md14_sfrd,
    md14_smd,
)

# state -> colour of the completion map, in legend order
STATE_COLOURS = {
    "done": "#2ca02c", "running": "#1f77b4", "queued": "#9ecae1", "retry_wait": "#ff7f0e",
    "failed": "#d62728", "blocked": "#7f7f7f", "todo": "#e5e5e5",
}  # fmt: skip
MIN_COUNT = 10  # galaxies in a bin below which a fraction or a quantile is not drawn
WRAP = 200  # realizations per row of the completion map


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colours(n: int):
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.9, max(n, 1))]


def completion_map(labels: list[str], realizations: list[int], states: np.ndarray) -> str:
    """``states``: (snapshot, realization) indices into STATE_COLOURS. Realizations are
    wrapped every WRAP columns, one block of rows per snapshot."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _plt()
    n_snap, n_real = states.shape
    width = min(n_real, WRAP)
    rows = -(-n_real // width)
    grid = np.full((n_snap * rows, width), -1.0)
    for i in range(n_snap):
        block = np.full(rows * width, -1.0)
        block[:n_real] = states[i]
        grid[i * rows : (i + 1) * rows] = block.reshape(rows, width)
    fig, ax = plt.subplots(figsize=(11, 1.2 + min(0.25 * n_snap * rows, 8.0)))
    cmap = ListedColormap(list(STATE_COLOURS.values())).with_extremes(bad="white")
    ax.imshow(np.ma.masked_less(grid, 0), cmap=cmap, vmin=0, vmax=len(STATE_COLOURS) - 1,
              aspect="auto", interpolation="nearest")  # fmt: skip
    ax.set_yticks([i * rows + (rows - 1) / 2 for i in range(n_snap)], [f"z={x}" for x in labels])
    for i in range(1, n_snap):
        ax.axhline(i * rows - 0.5, color="k", lw=0.8)
    first = realizations[0] if realizations else 0
    ax.set_xlabel(f"realization (column; {width} per row, from r{first:04d}, plan order)")
    ax.legend(handles=[Patch(color=c, label=s) for s, c in STATE_COLOURS.items()],
              ncol=len(STATE_COLOURS), loc="lower center", bbox_to_anchor=(0.5, 1.0),
              frameon=False, fontsize=8)  # fmt: skip
    return _png(fig)


def _band(ax, x, values, colour, label):
    """Ensemble mean (line) and 16-84% (band) of ``values`` (box, bin); empty bins hidden."""
    mean = values.mean(axis=0)
    lo, hi = np.percentile(values, [16, 84], axis=0)
    ok = mean > 0
    ax.plot(x[ok], mean[ok], color=colour, label=label)
    ax.fill_between(x[ok], np.maximum(lo[ok], mean[ok] * 1e-3), hi[ok], color=colour, alpha=0.25,
                    lw=0)  # fmt: skip


def mass_and_sfr_functions(ensembles) -> tuple[str, str]:
    """Stellar mass function and cumulative SFR function per snapshot."""
    plt = _plt()
    out = []
    for kind in ("smf", "sfr"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for e, c in zip(ensembles, _colours(len(ensembles)), strict=True):
            label = f"z={e.label} ({e.n} boxes)"
            if kind == "smf":
                _band(ax, 0.5 * (MSTAR_EDGES[1:] + MSTAR_EDGES[:-1]), e.smf, c, label)
                if np.isfinite(lim := np.nanmedian(e.mstar_complete)):
                    ax.axvline(lim, color=c, ls=":", lw=1)
            else:
                _band(ax, SFR_EDGES[:-1], e.sfr_cum, c, label)
        ax.set_yscale("log")
        if kind == "smf":
            ax.set_xlabel(r"$\log_{10} M_\star$ [M$_\odot$]")
            ax.set_ylabel(r"$\Phi$ [dex$^{-1}$ (Mpc/$h$)$^{-3}$]")
            ax.set_title(
                "Stellar mass function (surviving mass): mean, 16-84% (dotted: completeness limit)"
            )
        else:
            ax.set_xlabel(r"$\log_{10}$ SFR [M$_\odot$ yr$^{-1}$]")
            ax.set_ylabel(r"$n(>\mathrm{SFR})$ [(Mpc/$h$)$^{-3}$]")
            ax.set_title("Cumulative SFR function: mean, 16-84% of boxes")
        ax.legend(fontsize=8)
        out.append(_png(fig))
    return out[0], out[1]


def hist_quantiles(counts: np.ndarray, edges: np.ndarray, qs) -> np.ndarray:
    """Quantiles ``qs`` along the last axis of histograms ``counts`` (row, bin) with bin
    ``edges``, linear within a bin; NaN for empty rows. Shape (len(qs), row)."""
    counts = np.asarray(counts, float)
    cum = np.cumsum(counts, axis=1)
    total = cum[:, -1]
    rows = np.arange(len(counts))
    out = np.full((len(qs), len(counts)), np.nan)
    for k, q in enumerate(qs):
        target = q * total
        i = np.minimum((cum < target[:, None]).sum(axis=1), counts.shape[1] - 1)
        below = np.where(i > 0, cum[rows, np.maximum(i - 1, 0)], 0.0)
        inbin = counts[rows, i]
        frac = np.clip((target - below) / np.where(inbin > 0, inbin, 1.0), 0.0, 1.0)
        out[k] = np.where(total > 0, edges[i] + frac * (edges[i + 1] - edges[i]), np.nan)
    return out


def shmr(ensembles) -> str:
    """Central stellar-to-halo mass relation: median and 16-84% of M* per halo-mass bin."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = 0.5 * (MHALO_EDGES[1:] + MHALO_EDGES[:-1])
    for e, c in zip(ensembles, _colours(len(ensembles)), strict=True):
        lo, med, hi = hist_quantiles(e.shmr, MSTAR_EDGES, (0.16, 0.5, 0.84))
        ok = e.shmr.sum(axis=1) >= MIN_COUNT
        ax.plot(x[ok], med[ok], color=c, label=f"z={e.label}")
        ax.fill_between(x[ok], lo[ok], hi[ok], color=c, alpha=0.25, lw=0)
    ax.set_xlabel(r"$\log_{10} M_\mathrm{halo}$ [M$_\odot$]")
    ax.set_ylabel(r"$\log_{10} M_\star$ [M$_\odot$]")
    ax.set_title(f"Centrals: median and 16-84% of M* (bins with >= {MIN_COUNT} centrals)")
    ax.legend(fontsize=8)
    return _png(fig)


def fractions(ensembles) -> str:
    """Satellite and quenched fractions against stellar mass (ensemble-summed counts)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    x = 0.5 * (MSTAR_EDGES[1:] + MSTAR_EDGES[:-1])
    for e, c in zip(ensembles, _colours(len(ensembles)), strict=True):
        ok = e.smf_all_sum >= MIN_COUNT
        denominator = np.where(ok, e.smf_all_sum, 1)
        for ax, part in zip(axes, (e.smf_sat_sum, e.smf_q_sum), strict=True):
            ax.plot(x[ok], (part / denominator)[ok], color=c, label=f"z={e.label}")
    axes[0].set_ylabel("fraction")
    axes[0].set_title("Satellite fraction (smf_satellites / smf_all)")
    axes[1].set_title("Quenched fraction (sSFR < 0.2/t_obs; smf_quenched / smf_all)")
    for ax in axes:
        ax.set_xlabel(r"$\log_{10} M_\star$ [M$_\odot$]")
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(fontsize=8)
    return _png(fig)


def cosmic_densities(ensembles, z_curve, curves: tuple[dict, dict]) -> str:
    """SFR and stellar-mass densities per box (points), ensemble means, and reference
    ``curves`` on ``z_curve``: ({label: (sfrd, style)}, {label: (smd, colour, style)}). The
    stellar mass panel shows the surviving mass (red) and the mass formed (grey)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rng = np.random.default_rng(0)
    for label, (sfrd, style) in curves[0].items():
        axes[0].plot(z_curve, sfrd, style, color="k", lw=1, label=label)
    for label, (smd, colour, style) in curves[1].items():
        axes[1].plot(z_curve, smd, style, color=colour, lw=1, label=label)
    panels = ((axes[0], "sfr_density", "tab:red", ""), (axes[1], "mstar_density", "tab:red",
              " (surviving)"), (axes[1], "mstar_formed_density", "0.4", " (formed)"))  # fmt: skip
    for ax, name, colour, what in panels:
        for e in ensembles:
            values = getattr(e, name)
            jitter = rng.uniform(-0.01, 0.01, e.n)
            ax.plot(e.redshift + jitter, values, ".", color="tab:blue", ms=2, alpha=0.4)
        means = [getattr(e, name).mean() for e in ensembles]
        ax.plot([e.redshift for e in ensembles], means, "o", color=colour, ms=6,
                label=f"boxes{what}: ensemble mean (points: each box)")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("redshift")
    axes[0].set_ylabel(r"$\psi$ [M$_\odot$ yr$^{-1}$ Mpc$^{-3}$]")
    axes[0].set_title("Cosmic SFR density")
    axes[1].set_ylabel(r"$\rho_\star$ [M$_\odot$ Mpc$^{-3}$]")
    axes[1].set_title("Stellar mass density")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=6)
    return _png(fig)


def number_density(ensembles, flagged) -> str:
    """Number density of every box per snapshot; ``flagged`` outliers in red, named."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    rng = np.random.default_rng(1)
    position = {e.label: i for i, e in enumerate(ensembles)}
    flagged = [f for f in flagged if f.statistic == NUMBER_DENSITY]
    named = {f.task_id for f in flagged}
    for i, e in enumerate(ensembles):
        ax.plot(i + rng.uniform(-0.15, 0.15, e.n), e.number_density, ".", color="tab:blue",
                ms=3, alpha=0.5)  # fmt: skip
        kept = e.number_density[[t not in named for t in e.tasks]]
        ax.errorbar(i + 0.3, kept.mean(), kept.std(), fmt="s", color="k", capsize=3)
    for f in flagged:
        x = position[redshift_label(f.redshift)]
        ax.plot(x, f.value, "x", color="tab:red", ms=10, mew=2)
        ax.annotate(f.task_id, (x, f.value), xytext=(6, 4), textcoords="offset points",
                    color="tab:red", fontsize=8)  # fmt: skip
    ax.set_xticks(range(len(ensembles)), [f"z={e.label}" for e in ensembles])
    ax.set_yscale("log")
    ax.set_ylabel(r"$n$ [(Mpc/$h$)$^{-3}$]")
    every = np.concatenate([e.number_density for e in ensembles])
    if (every > 0).any():  # room for the names; never a zero range
        ax.set_ylim(every[every > 0].min() / 1.3, every.max() * 1.5)
    ax.set_title("Number density per box (square: mean and std without outliers; x: outlier)")
    return _png(fig)


def _per_snapshot_hist(ax, ensembles, values: list[np.ndarray], xlabel: str, title: str):
    """Step histograms (log bins) of one positive per-box value, one line per snapshot."""
    every = np.concatenate(values) if values else np.array([])
    if len(every):
        bins = np.geomspace(every.min() * 0.9, every.max() * 1.1 + 1e-9, 30)
        for e, v, c in zip(ensembles, values, _colours(len(ensembles)), strict=True):
            ax.hist(v, bins, histtype="step", color=c, label=f"z={e.label}")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("boxes")
    ax.set_title(title)


def _positive(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x) & (x > 0)]


def timing(ensembles, done_times: np.ndarray) -> str:
    """Task durations and peak memory (QA records' wall_s, peak_rss_bytes) and completions
    over time (journal)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    _per_snapshot_hist(axes[0], ensembles, [_positive(e.wall_s) for e in ensembles],
                       "task wall time [s]", "Task durations (QA records)")  # fmt: skip
    gib = [_positive(e.peak_rss_bytes) / 2**30 for e in ensembles]
    _per_snapshot_hist(axes[1], ensembles, gib, "peak resident memory [GiB]",
                       "Peak memory per task (QA records)")  # fmt: skip
    if len(done_times):
        hours = (np.sort(done_times) - done_times.min()) / 3600.0
        axes[2].plot(hours, np.arange(1, len(hours) + 1), color="k")
        twin = axes[2].twinx()
        width = max(hours[-1] / 40, 1 / 60)  # bins of at least a minute
        span = max(hours[-1], width)
        counts, edges = np.histogram(hours, np.arange(0, span + width, width))
        twin.bar(edges[:-1], counts / width, width, align="edge", color="tab:orange", alpha=0.4)
        twin.set_ylabel("throughput [boxes/h]", color="tab:orange")
    axes[2].set_xlabel("hours since the first completion")
    axes[2].set_ylabel("boxes done (cumulative)")
    axes[2].set_title("Completions (journal 'done' events)")
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------- reference and page pieces


def esc(value) -> str:
    return html.escape(str(value))


def table(header: list[str], rows: list[list], left: int = 1) -> str:
    def cells(tag, row):
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{esc(v)}</{tag}>"
                       for i, v in enumerate(row))  # fmt: skip

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', header)}</tr>{body}</table>"


def img(png: str, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{png}">'


def science_sections(ens, flagged: list, n_sigma: float, min_boxes: int) -> dict[str, str]:
    """HTML of the science sections: figures with their captions, the outlier table."""
    smf, sfr = mass_and_sfr_functions(ens)
    z = np.linspace(0.0, max(max(e.redshift for e in ens), 1.0) * 1.1, 60)
    curves = (
        {"MD14 x 0.63 (Chabrier)": (md14_sfrd(z), "-"),
         "MD14 (Salpeter, as published)": (md14_sfrd(z, False), ":")},
        {"MD14 x 0.63, surviving (DSPS, Chabrier)": (md14_smd(z, mass="surviving"), "tab:red", "-"),
         "MD14 x 0.63, formed (R = 0)": (md14_smd(z, mass="formed"), "0.4", "--"),
         f"MD14 (Salpeter, eq. 2, R = {MD14_RETURN_FRACTION})": (md14_smd(z, False), "k", ":")},
    )  # fmt: skip
    rows = [[f.task_id, redshift_label(f.redshift), f.statistic, f"{f.value:.4g}",
             f"{f.mean:.4g}", f"{f.std:.3g}", f"{f.sigmas:+.1f}"] for f in flagged]  # fmt: skip
    header = ["task", "z", "statistic", "value", "mean of others", "std of others",
              "deviation [std]"]  # fmt: skip
    named = table(header, rows, left=3) if rows else "<p>No outlier.</p>"
    return {
        "functions": img(smf, "stellar mass function")
        + img(sfr, "SFR function")
        + "<p class=note>Phi = counts / 0.1 dex / box volume; n(>SFR) counts galaxies above "
        "each bin's lower edge. Only galaxies of the catalogs' halos: below the completeness "
        "limit (dotted) the functions are low.</p>",
        "shmr": img(shmr(ens), "stellar-to-halo mass relation")
        + "<p class=note>From the ensemble-summed histogram <code>centrals_mhalo_mstar</code>; "
        "quantiles interpolated linearly within the 0.1 dex bins.</p>",
        "fractions": img(fractions(ens), "satellite and quenched fractions"),
        "cosmic": img(cosmic_densities(ens, z, curves), "cosmic densities")
        + "<p class=note>Madau &amp; Dickinson (2014, ARA&amp;A 52, 415): psi(z) = 0.015 "
        "(1+z)^2.7 / (1 + ((1+z)/2.9)^5.6) Msun/yr/Mpc^3 for a Salpeter IMF (0.1-100 Msun). "
        "diffsky/DSPS masses and SFRs assume a Chabrier-like IMF, so the fit is multiplied by "
        f"{MD14_SALPETER_TO_CHABRIER} (Salpeter to Chabrier; dotted: as published). Stellar "
        "mass density, like with like: the boxes' surviving mass (log10_mstar_surviving, red) "
        "against the Chabrier SFRD integrated over cosmic time with the same surviving "
        "fraction (DSPS, Chabrier IMF; solid red), and their mass formed (log10_mstar, grey) "
        "against the plain integral (R = 0, dashed grey); dotted: their eq. 2 as published, "
        f"(1-R) times the Salpeter integral with R = {MD14_RETURN_FRACTION}. Integrals computed "
        "numerically in the fit's cosmology (h=0.7, Om=0.3, OL=0.7). Box densities are per "
        "comoving Mpc^3 (the boxes' h) and count only the galaxies of the catalogs' halos: "
        "lower bounds.</p>",
        "density": img(number_density(ens, flagged), "number density")
        + f"<p>A box is an outlier when its number density, or its stellar mass function in "
        f"any 0.1 dex bin above the completeness limit where the others average at least "
        f"{SMF_MIN_COUNT:g} galaxies, lies more than {n_sigma:g} standard deviations from the "
        f"mean of the other boxes of its snapshot (snapshots of at least {min_boxes} boxes; "
        "the mass function's deviation at least Poisson's). Number densities per "
        "(Mpc/h)^3, the mass function per dex per (Mpc/h)^3.</p>" + named,
    }
