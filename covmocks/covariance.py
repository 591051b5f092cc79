"""The clustering covariance of a campaign, ``covariance.hdf5`` (``build``, ``read``).

Built from the boxes finished so far: the clustering records (``qa/<task>.pk.hdf5``,
``covmocks.power``) that exist and read (unreadable ones are skipped, named in the log and
the file); it may run while the campaign runs. Per snapshot, sample and statistic (``real``;
``redshift``: the mean over the three lines of sight) a box's data vector is [P0(k), P2(k),
P4(k)] (p = 3 nk), (Mpc/h)^3, k in h/Mpc, shot noise not subtracted. A box whose estimator
settings differ from the first box's, or whose k binning differs from the first box's of its
snapshot (box sizes may differ between snapshots), is an error, never mixed in.

The file, as ``read`` returns it (``{"attrs": {...}, name: array or group}``)::

    /                           attrs: provenance (campaign, version, model, estimator,
                                covmocks and its stack, time), counts of boxes used,
                                missing and skipped
    /z<label>/                  k_mid, k_avg, n_modes: the snapshot's k binning
    /z<label>/<sample>/         tasks, realizations, below_completeness (per box, aligned);
                                attrs: the sample's selection, mean density and shot noise
    /z<label>/<sample>/<stat>/  mean (p,), covariance (p, p; ddof 1), correlation (p, p),
                                diag_ratio_half (first half of the realizations over all),
                                eigenvalues, eigenvalues_half (leading ones of the
                                correlation matrices); attrs: n_realizations, p, hartlap
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from covmocks.errors import CovmocksError
from covmocks.layout import redshift_label

log = logging.getLogger(__name__)

STATISTICS = ("real", "redshift")
MULTIPOLES = (0, 2, 4)
N_EIGEN = 5  # leading eigenvalues of the correlation matrices in the convergence diagnostic
_SAMPLE_MEANS = ("number_density_h3_mpc3", "shot_noise_mpc3_h3")
_SELECTION = ("select", "threshold", "threshold_origin")


def read_box(path) -> dict | None:
    """What the covariance needs of one clustering record, or None where it cannot be read:
    ``{"estimator": settings (JSON), "model": (name, version), "k": (k_mid, k_avg, n_modes),
    "samples": {name: {"real", "redshift": (3 nk,), "below", "subtracted", "attrs"}}}``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f.attrs
            settings = json.loads(root["estimator"])
            model = (str(root["model_name"]), str(root["model_version"]))
            box = {"estimator": settings, "model": model, "k": None, "samples": {}}
            for name, g in f.items():
                if box["k"] is None:
                    box["k"] = tuple(g[key][()] for key in ("k_mid", "k_avg", "n_modes"))
                a = g.attrs
                box["samples"][name] = {
                    "real": g["real"][()].ravel(), "redshift": g["redshift"][()].ravel(),
                    "below": bool(a.get("below_completeness", False)),
                    "subtracted": bool(a.get("shot_noise_subtracted", False)),
                    "attrs": {k: a[k] for k in (*_SAMPLE_MEANS, *_SELECTION) if k in a},
                }  # fmt: skip
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        return None
    return box if box["k"] is not None else None


def _settings(estimator) -> str:
    """The estimator settings that must agree between boxes: all but software versions."""
    if isinstance(estimator, dict):
        estimator = {k: v for k, v in estimator.items() if not k.endswith("_version")}
    return json.dumps(estimator, sort_keys=True)


def load(campaign, plan=None, *, cache: dict | None = None) -> tuple[list[tuple], list[str], int]:
    """(``(task, box)`` of every readable clustering record in plan order, task ids whose
    record exists but does not read, number of boxes without a record). ``cache`` (path ->
    (mtime, size, box)), kept between calls, saves rereading records that did not change."""
    from covmocks.plan import dir_names, make_plan

    plan = plan or make_plan(campaign)
    layout = campaign.layout
    names = dir_names(layout.qa)
    boxes, skipped, missing = [], [], 0
    for task in plan.tasks:
        path = layout.clustering(task.task_id)
        if path.name not in names:
            missing += 1
            continue
        box = _cached(path, cache) if cache is not None else read_box(path)
        if box is None:
            skipped.append(task.task_id)
        else:
            boxes.append((task, box))
    if skipped:
        log.warning("%d boxes skipped, clustering record unreadable: %s%s", len(skipped),
                    ", ".join(skipped[:20]), ", ..." if len(skipped) > 20 else "")  # fmt: skip
    return boxes, skipped, missing


def _cached(path: Path, cache: dict) -> dict | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    if cache.get(path, (None,))[0] != key and (box := read_box(path)) is not None:
        cache[path] = (key, box)  # only what read: a transient failure is tried again
    return cache[path][1] if path in cache and cache[path][0] == key else None


def estimate(vectors: np.ndarray, realizations) -> dict:
    """Mean, covariance (ddof 1), correlation, Hartlap factor and convergence diagnostic of
    data vectors (N, p); the first half is the N // 2 lowest ``realizations``."""
    x = np.asarray(vectors, np.float64)
    n, p = x.shape
    cov, corr = _covariance(x)
    half = x[np.argsort(np.asarray(realizations), kind="stable")[: n // 2]]
    cov_half, corr_half = _covariance(half)
    ok = n > p + 2
    out = {"mean": x.mean(axis=0), "covariance": cov,
           "correlation": corr, "eigenvalues": _leading(corr),
           "eigenvalues_half": _leading(corr_half),
           "attrs": {"n_realizations": n, "p": p, "n_half": len(half),
                     "hartlap": (n - p - 2) / (n - 1) if ok else float("nan"),
                     "hartlap_note": "" if ok else f"N = {n} <= p + 2 = {p + 2}: too few "
                     "realizations for an inverse covariance (Hartlap factor NaN)"}}  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        out["diag_ratio_half"] = np.diag(cov_half) / np.diag(cov)
    return out


def _covariance(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, p = x.shape
    if n < 2:
        return np.full((p, p), np.nan), np.full((p, p), np.nan)
    d = x - x.mean(axis=0)
    cov = d.T @ d / (n - 1)
    sigma = np.sqrt(np.diag(cov))
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov, cov / np.outer(sigma, sigma)


def _leading(corr: np.ndarray) -> np.ndarray:
    if not np.isfinite(corr).all():
        return np.full(min(N_EIGEN, len(corr)), np.nan)
    return np.linalg.eigvalsh(corr)[::-1][:N_EIGEN]


MIX = "a covariance cannot mix them: remake one or the other"


def _check_estimator(task, box, first) -> None:
    """CovmocksError where ``box`` was measured with other estimator settings than
    ``first`` (task, box)."""
    ftask, fbox = first
    mine, theirs = _settings(box["estimator"]), _settings(fbox["estimator"])
    if mine != theirs:
        raise CovmocksError(f"box {task.task_id}: clustering estimator {mine} differs from "
                            f"{theirs} of box {ftask.task_id}; {MIX}")  # fmt: skip


def _check_binning(task, box, first) -> None:
    """CovmocksError where ``box`` has another k binning (k_mid, n_modes) than ``first``
    (task, box) of its snapshot."""
    ftask, fbox = first
    if not all(box["k"][i].shape == fbox["k"][i].shape
               and np.allclose(box["k"][i], fbox["k"][i], rtol=1e-9, atol=0, equal_nan=True)
               for i in (0, 2)):  # fmt: skip
        k, k0 = box["k"][0], fbox["k"][0]
        raise CovmocksError(f"box {task.task_id}: k binning ({len(k)} bins, k_mid {k[0]:.4g}.."
                            f"{k[-1]:.4g} h/Mpc) differs from box {ftask.task_id}'s ({len(k0)} "
                            f"bins, {k0[0]:.4g}..{k0[-1]:.4g} h/Mpc); {MIX}")  # fmt: skip


def assemble(boxes: list[tuple], skipped=(), missing: int = 0, campaign=None) -> dict:
    """The covariance file's content (as ``read`` returns it) from ``load``'s boxes."""
    from covmocks.provenance import software_versions, utc_now

    firsts: dict = {}
    for task, box in boxes:
        _check_estimator(task, box, boxes[0])
        _check_binning(task, box, firsts.setdefault(redshift_label(task.redshift), (task, box)))
    tree: dict = {}
    counts, below_counts, subtracted = {}, {}, False
    for (label, name), members in _groups(boxes).items():
        tasks, samples = [t for t, _ in members], [b["samples"][name] for _, b in members]
        realizations = np.array([t.realization for t in tasks], np.int64)
        below = np.array([s["below"] for s in samples])
        n_below = int(below.sum())
        attrs = {k: v for k, v in samples[0]["attrs"].items() if k in _SELECTION}
        for key in _SAMPLE_MEANS:
            values = [s["attrs"][key] for s in samples if key in s["attrs"]]
            attrs[f"mean_{key}"] = float(np.mean(values)) if values else float("nan")
        attrs["shot_noise_subtracted"] = any(s["subtracted"] for s in samples)
        subtracted |= attrs["shot_noise_subtracted"]
        z = float(tasks[0].redshift)
        attrs |= {"redshift": z, "n_realizations": len(tasks), "n_below_completeness": n_below}
        group = {"tasks": [t.task_id for t in tasks], "realizations": realizations,
                 "below_completeness": below, "attrs": attrs}  # fmt: skip
        for stat in STATISTICS:
            group[stat] = estimate(np.array([s[stat] for s in samples]), realizations)
        k_mid, k_avg, n_modes = firsts[label][1]["k"]
        snapshot = {"attrs": {"redshift": z}, "k_mid": k_mid, "k_avg": k_avg, "n_modes": n_modes}
        tree.setdefault(f"z{label}", snapshot)[name] = group
        counts[f"z{label}/{name}"], below_counts[f"z{label}/{name}"] = len(tasks), n_below
    first = boxes[0][1] if boxes else {"estimator": None}
    models = sorted({box["model"] for _, box in boxes})
    name, version = models[0] if len(models) == 1 else ("", "")  # several: see "models"
    software = software_versions()
    tree["attrs"] = {
        "campaign": getattr(campaign, "name", ""),
        "campaign_version": getattr(campaign, "version", ""),
        "model_name": name, "model_version": version, "models": [" ".join(m) for m in models],
        "estimator": first["estimator"], "multipoles": list(MULTIPOLES),
        "statistics": list(STATISTICS), "units": "P_ell in (Mpc/h)^3, k in h/Mpc",
        "data_vector": "[P0(k), P2(k), P4(k)] concatenated over the k bins (p = 3 nk)",
        "shot_noise_subtracted": subtracted, "n_boxes_used": len(boxes),
        "n_boxes_missing": missing, "n_boxes_skipped": len(skipped),
        "skipped": list(skipped)[:1000], "boxes_per_group": counts,
        "below_completeness_per_group": below_counts, "covmocks_version": software["covmocks"],
        "software": software, "created_utc": utc_now(),
    }  # fmt: skip
    return tree


def _groups(boxes: list[tuple]) -> dict[tuple[str, str], list[tuple]]:
    """(redshift label, sample) -> its (task, box), by increasing redshift, plan order."""
    groups: dict = {}
    for task, box in sorted(boxes, key=lambda tb: tb[0].redshift):
        for name in box["samples"]:
            groups.setdefault((redshift_label(task.redshift), name), []).append((task, box))
    return groups


def compute(campaign, plan=None, *, cache: dict | None = None) -> dict:
    """The covariance of the boxes finished so far (``load`` then ``assemble``)."""
    boxes, skipped, missing = load(campaign, plan, cache=cache)
    return assemble(boxes, skipped, missing, campaign)


def build(campaign, plan=None) -> Path:
    """Write ``campaign.layout.covariance`` (atomically) from the boxes finished so far."""
    t0 = time.perf_counter()
    tree = compute(campaign, plan)
    path = campaign.layout.covariance
    write(path, tree)
    a = tree["attrs"]
    log.info("wrote %s in %.1f s: %d boxes, %d without a clustering record, %d skipped",
             path, time.perf_counter() - t0, a["n_boxes_used"], a["n_boxes_missing"],
             a["n_boxes_skipped"])  # fmt: skip
    return path


def write(path, tree: dict) -> None:
    """Write ``tree`` (``assemble``'s) to ``path`` through a temporary file and a rename."""
    from covmocks.catalog import replaced_file

    with replaced_file(path) as f:
        _write_group(f, tree)


def _write_group(g, tree: dict) -> None:
    import h5py

    from covmocks.catalog import write_attrs

    for name, value in tree.items():
        if name == "attrs":
            write_attrs(g, value)
        elif isinstance(value, dict):
            _write_group(g.create_group(name), value)
        elif isinstance(value, list):  # task ids
            g.create_dataset(name, data=value, dtype=h5py.string_dtype())
        else:
            g.create_dataset(name, data=value)


def read(path) -> dict:
    """``covariance.hdf5`` as nested dicts: ``{"attrs": {...}, name: array or dict}``; JSON
    attributes (lists, dicts) decoded, task ids as lists of str."""
    import h5py

    def walk(g) -> dict:
        out = {"attrs": {k: _decoded(v) for k, v in g.attrs.items()}}
        for name, item in g.items():
            if isinstance(item, h5py.Group):
                out[name] = walk(item)
            elif h5py.check_string_dtype(item.dtype):
                out[name] = item.asstr()[()].tolist()
            else:
                out[name] = item[()]
        return out

    with h5py.File(path, "r") as f:
        return walk(f)


def _decoded(value):
    if isinstance(value, str) and (value[:1] in ("[", "{") or value == "null"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
