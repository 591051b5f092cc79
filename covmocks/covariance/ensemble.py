"""The clustering covariance of a campaign, ``covariance.hdf5`` (``build``, ``read``).

Built from the boxes finished so far: the clustering records (``qa/<task>.pk.hdf5``,
``covmocks.clustering.power``) that exist and read (unreadable ones are skipped, named in the log
and the file); it may run while the campaign runs. Per snapshot and sample, a box's data vector
is [P0(k), P2(k), P4(k)] (p = 3 nk), (Mpc/h)^3, k in h/Mpc on the box's lattice, shot noise
not subtracted. A box whose estimator settings differ from the first box's, or whose k
binning differs from the first box's of its snapshot (box sizes may differ between
snapshots), is an error, never mixed in.

Statistics (``covmocks.covariance.estimators`` has the formulas):

- ``real``: real space, line of sight z.
- ``redshift``: redshift space along ONE line of sight, what a survey measures: the mean over
  the 3N per-axis measurements and the covariance (C_x + C_y + C_z) / 3. The data covariance
  a survey analysis starts from.
- ``redshift_mean3``: the mean of the three axes' measurements of each box, and its
  covariance: the covariance of a three-axis average (smaller, mostly for P2), not a survey's.

Beside each measured ``real`` and ``redshift`` covariance, ``gaussian_covariance``: the
Gaussian reference from the ensemble-mean multipoles, plus the term the box-to-box scatter
of the shot noise V/N adds (``covmocks.covariance.gaussian``), and ``gaussian_diag_ratio``,
measured over reference per element of the diagonal.
``/z<label>/_joint/`` holds the joint data vector of all the snapshot's samples,
[sample A; sample B; ...] in ``samples`` order, over the boxes that measured every one.

Rescaling to a survey: for a Gaussian field the covariance scales with the inverse volume,
C_survey ~ C_box V_box / V_survey; an approximation that ignores the survey window and the
super-sample covariance (the root attribute ``volume_scaling`` says so).

The file, as ``read`` returns it (``{"attrs": {...}, name: array or group}``)::

    /                           attrs: provenance (campaign, version, model, estimator,
                                covmocks and its stack, time), cosmology, simulation, counts
                                of boxes used, missing and skipped, format_version
    /z<label>/                  k_mid, k_avg, n_modes: the snapshot's k binning; attrs:
                                redshift, box_size (Mpc/h), volume ((Mpc/h)^3)
    /z<label>/<sample>/         tasks, realizations, below_completeness (per box, aligned);
                                attrs: the sample's selection, mean density and shot noise
    /z<label>/<sample>/<stat>/  mean (p,), covariance (p, p; ddof 1), correlation (p, p),
                                diag_ratio_half (first half of the realizations over all),
                                eigenvalues, eigenvalues_half (leading ones of the
                                correlation matrices); real and redshift also
                                gaussian_covariance, gaussian_diag_ratio; attrs:
                                n_realizations, p, line_of_sight, hartlap, percival_A/B,
                                convergence (verdict, noise level, eigenvalue noise edge)
    /z<label>/_joint/<stat>/    the same for the joint vector; attrs samples, tasks
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from covmocks.core.errors import CovmocksError
from covmocks.core.layout import redshift_label
from covmocks.covariance import estimators as stats
from covmocks.covariance import gaussian

log = logging.getLogger(__name__)

STATISTICS = ("real", "redshift", "redshift_mean3")
LINES_OF_SIGHT = {
    "real": "real space, line of sight z",
    "redshift": "one line of sight: mean over the 3N per-axis measurements, covariance "
    "(C_x + C_y + C_z)/3",
    "redshift_mean3": "the mean of the x, y, z measurements of each box: the covariance of a "
    "three-axis average, not of one survey-like measurement",
}
MULTIPOLES = (0, 2, 4)
JOINT = "_joint"  # a sample name cannot start with "_"
FORMAT_VERSION = 2  # 2: lattice k bins, one line of sight, Gaussian reference, joint vector
VOLUME_SCALING = ("C_survey ~ C_box * V_box / V_survey for a Gaussian field; an approximation "
                  "without the survey window or super-sample covariance")  # fmt: skip
_SAMPLE_MEANS = ("number_density_h3_mpc3", "shot_noise_mpc3_h3")
_SELECTION = ("select", "threshold", "threshold_origin")


def read_box(path) -> dict | None:
    """What the covariance needs of one clustering record, or None where it cannot be read:
    ``{"estimator": settings (JSON), "model": (name, version), "k": (k_mid, k_avg, n_modes),
    "box": root attributes (box_size, h, Om0), "samples": {name: {"real": (3 nk,),
    "redshift": (3 axes, 3 nk), "below", "subtracted", "attrs"}}}``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            root = f.attrs
            settings = json.loads(root["estimator"])
            model = (str(root["model_name"]), str(root["model_version"]))
            box = {
                "estimator": settings,
                "model": model,
                "k": None,
                "samples": {},
                "box": {k: float(root[k]) for k in ("box_size", "h", "Om0") if k in root},
            }
            for name, g in f.items():
                if box["k"] is None:
                    box["k"] = tuple(g[key][()] for key in ("k_mid", "k_avg", "n_modes"))
                a = g.attrs
                box["samples"][name] = {
                    "real": g["real"][()].ravel(),
                    "redshift": np.array([g[f"redshift_{a}"][()].ravel() for a in "xyz"]),
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
    from covmocks.workflow.plan import dir_names, make_plan

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


def statistics(samples: list[dict], realizations, n_modes, dk) -> dict:
    """``STATISTICS`` of one group: each sample dict holds "real" (p,) and "redshift" (3, p)
    of one box (several samples concatenated for the joint vector), and "attrs" its shot
    noise. The reference (Gaussian, plus the scatter of the boxes' shot noise) is added to
    ``real`` and ``redshift`` where ``dk`` (bin width in k_f) is known and the vector is one
    sample's (p = 3 nk)."""
    real = np.array([s["real"] for s in samples])
    axes = np.array([s["redshift"] for s in samples])
    shots = [s["attrs"].get("shot_noise_mpc3_h3", np.nan) for s in samples if "attrs" in s]
    shot_variance = np.var(shots, ddof=1) if len(shots) > 1 else 0.0
    out = {"real": stats.estimate(real, realizations),
           "redshift": stats.estimate(axes, realizations, per_axis=True),
           "redshift_mean3": stats.estimate(axes.mean(axis=1), realizations)}  # fmt: skip
    for stat, group in out.items():
        group["attrs"]["line_of_sight"] = LINES_OF_SIGHT[stat]
        if stat == "redshift_mean3" or dk is None or real.shape[1] != 3 * len(n_modes):
            continue
        reference = gaussian.covariance(group["mean"].reshape(3, -1), n_modes, dk)
        reference += gaussian.shot_noise_covariance(len(n_modes), dk, shot_variance)
        group["gaussian_covariance"] = reference
        group["gaussian_diag_ratio"] = gaussian.diag_ratio(group["covariance"], reference)
    return out


def assemble(boxes: list[tuple], skipped=(), missing: int = 0, campaign=None) -> dict:
    """The covariance file's content (as ``read`` returns it) from ``load``'s boxes."""
    from covmocks.core.provenance import software_versions, utc_now

    firsts: dict = {}
    for task, box in boxes:
        _check_estimator(task, box, boxes[0])
        _check_binning(task, box, firsts.setdefault(redshift_label(task.redshift), (task, box)))
    first = boxes[0][1] if boxes else {"estimator": None, "box": {}}
    dk = (first["estimator"] or {}).get("dk_fundamentals") if boxes else None
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
        k_mid, k_avg, n_modes = firsts[label][1]["k"]
        group = {"tasks": [t.task_id for t in tasks], "realizations": realizations,
                 "below_completeness": below, "attrs": attrs,
                 **statistics(samples, realizations, n_modes, dk)}  # fmt: skip
        box_size = firsts[label][1]["box"].get("box_size", float("nan"))
        snapshot = {"attrs": {"redshift": z, "box_size": box_size, "volume": box_size**3},
                    "k_mid": k_mid, "k_avg": k_avg, "n_modes": n_modes}  # fmt: skip
        tree.setdefault(f"z{label}", snapshot)[name] = group
        counts[f"z{label}/{name}"], below_counts[f"z{label}/{name}"] = len(tasks), n_below
    for label, members in _snapshots(boxes).items():
        joint = _joint(members)
        if joint is not None:
            tree[f"z{label}"][JOINT] = joint
    models = sorted({box["model"] for _, box in boxes})
    name, version = models[0] if len(models) == 1 else ("", "")  # several: see "models"
    software = software_versions()
    tree["attrs"] = {
        "format_version": FORMAT_VERSION,
        "campaign": getattr(campaign, "name", ""),
        "campaign_version": getattr(campaign, "version", ""),
        "model_name": name, "model_version": version, "models": [" ".join(m) for m in models],
        "simulation": _simulation(campaign), "h": first["box"].get("h", float("nan")),
        "Om0": first["box"].get("Om0", float("nan")), "volume_scaling": VOLUME_SCALING,
        "estimator": first["estimator"], "multipoles": list(MULTIPOLES),
        "statistics": list(STATISTICS), "lines_of_sight": LINES_OF_SIGHT,
        "units": "P_ell in (Mpc/h)^3, k in h/Mpc, box_size Mpc/h, volume (Mpc/h)^3",
        "data_vector": "[P0(k), P2(k), P4(k)] concatenated over the k bins (p = 3 nk); "
        f"{JOINT}: the samples' vectors concatenated in its samples order",
        "shot_noise_subtracted": subtracted, "n_boxes_used": len(boxes),
        "n_boxes_missing": missing, "n_boxes_skipped": len(skipped),
        "skipped": list(skipped)[:1000], "boxes_per_group": counts,
        "below_completeness_per_group": below_counts, "covmocks_version": software["covmocks"],
        "software": software, "created_utc": utc_now(),
    }  # fmt: skip
    return tree


def _simulation(campaign) -> str:
    """The simulation's name where the input path names one (AbacusSummit_...), else the
    source kind."""
    if campaign is None:
        return ""
    from covmocks.halos.abacus_layout import SIM_NAME

    sci = campaign.science
    found = SIM_NAME.search(sci.input or "")
    return found.group(0).removesuffix("_ph") if found else sci.source


def _snapshots(boxes: list[tuple]) -> dict[str, list[tuple]]:
    """redshift label -> its (task, box), plan order."""
    out: dict = {}
    for task, box in boxes:
        out.setdefault(redshift_label(task.redshift), []).append((task, box))
    return out


def _joint(members: list[tuple]) -> dict | None:
    """The joint statistics of a snapshot's samples (the first box's order), over the boxes
    that measured every one; None with fewer than two samples."""
    names = list(members[0][1]["samples"])
    both = [(t, b) for t, b in members if all(n in b["samples"] for n in names)]
    if len(names) < 2 or not both:
        return None
    joined = [{"real": np.concatenate([b["samples"][n]["real"] for n in names]),
               "redshift": np.concatenate([b["samples"][n]["redshift"] for n in names], axis=1)}
              for _, b in both]  # fmt: skip
    realizations = np.array([t.realization for t, _ in both], np.int64)
    return {"tasks": [t.task_id for t, _ in both], "realizations": realizations,
            "attrs": {"samples": names, "n_realizations": len(both)},
            **statistics(joined, realizations, (), None)}  # fmt: skip


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
    """Write ``campaign.layout.covariance`` (atomically) from the boxes finished so far;
    refuses a released version."""
    from covmocks.workflow.metadata import refuse_if_released

    refuse_if_released(campaign)
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
    from covmocks.catalog.hdf5 import replaced_file

    with replaced_file(path) as f:
        _write_group(f, tree)


def _write_group(g, tree: dict) -> None:
    import h5py

    from covmocks.catalog.hdf5 import write_attrs

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
