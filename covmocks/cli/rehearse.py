"""``covmocks rehearse``: a campaign file run as it is, except that its halos are synthetic
(``covmocks.halos.synthetic``) at the campaign's own box size, cosmology and redshifts, a few
realizations run through local Parsl workers into a directory of its own (never the
production one); then its covariance is built and judged (``covmocks.covariance.verdict``).

The rehearsal campaign file (``<directory>/campaign.yaml``) is derived from the production
file read as plain data: ``campaign``, ``clustering`` and the science model kept; the
source synthetic; the first N realizations and the chosen redshifts; the ``local`` profile
with one worker; no GPUs. Abacus and HDF5 boxes keep their size (comoving Mpc/h) with a
fraction F of the hosts the mass function puts in them, and the clustering samples' number
densities are multiplied by F, so that they select the same galaxy populations. A rerun
resumes.
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

from covmocks.cli.arguments import fraction, positive
from covmocks.core.errors import CovmocksError
from covmocks.core.layout import redshift_label
from covmocks.halos.synthetic import spawned

DEFAULT_REALIZATIONS = 4
TARGET_HOSTS = 10_000  # hosts per box the default host fraction aims at (first snapshot)
COSMOLOGY_TOLERANCE = 1e-4  # on h and Omega_M against the synthetic source's
# Execution keys a rehearsal keeps; the executor, provider and launcher are the local profile's.
KEPT_EXECUTION = ("retries", "backoff_base_s", "backoff_cap_s", "task_walltime_s",
                  "compression", "chunk_hosts", "umask")  # fmt: skip
# One worker: JAX and numba each use every core, and a warm worker makes a small box in about
# a second, so on a small machine one worker beats two compiling at once (about 2x, 2 cores).
LOCAL_EXECUTOR = {"workers_per_node": 1}


def add_parser(sub) -> None:
    """Register ``rehearse`` on the ``covmocks`` subcommands ``sub``."""
    p = sub.add_parser(
        "rehearse",
        help="run a campaign file on synthetic halos of its box "
        "size, locally, in a directory of its own; judge the covariance",
    )
    p.add_argument("campaign", type=Path, help="campaign file (YAML), e.g. a production one")
    p.add_argument(
        "--realizations",
        type=positive,
        default=DEFAULT_REALIZATIONS,
        metavar="N",
        help=f"the campaign's first N realizations (default {DEFAULT_REALIZATIONS})",
    )
    p.add_argument(
        "--redshifts",
        type=float,
        nargs="+",
        metavar="Z",
        help="snapshots to run, each one of the campaign's (default: all)",
    )
    p.add_argument("--hosts-fraction", type=fraction, metavar="F",
                   help="fraction of the mass function's hosts per box (default: about "
                   f"{TARGET_HOSTS:,} hosts per box at the first snapshot)")  # fmt: skip
    p.add_argument(
        "--directory",
        type=Path,
        metavar="DIR",
        help="where the rehearsal goes (default ./rehearsal-<campaign name>)",
    )
    p.add_argument("--monitoring", action="store_true", help="keep a Parsl monitoring database")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=run_rehearse)


def choose_redshifts(production, given) -> list[float]:
    """The campaign's redshifts that ``given`` names (all where None), in campaign order."""
    ours = production.science.redshifts
    if not given:
        return list(ours)
    labels = {redshift_label(z) for z in ours}
    for z in given:
        if redshift_label(z) not in labels:
            raise CovmocksError(f"redshift {z:g} is not one of campaign {production.name}'s: "
                                f"{', '.join(f'{x:g}' for x in ours)}")  # fmt: skip
    wanted = {redshift_label(z) for z in given}
    return [z for z in ours if redshift_label(z) in wanted]


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def rehearsal_directory(given: Path | None, production, data: dict) -> Path:
    """The rehearsal's directory (absolute): refused where it, or the campaign directory the
    rehearsal makes in it, is the production campaign's directory or inside it (or holds it)."""
    from covmocks.campaign.schema import OutputsSection

    directory = Path(os.path.realpath(given or Path.cwd() / f"rehearsal-{production.name}"))
    prod = Path(os.path.realpath(production.directory))
    template = (data.get("outputs") or {}).get("directory")
    name = (template or OutputsSection.model_fields["directory"].default).format(
        name=production.name, version=production.version
    )
    campaign_dir = directory / name
    if _inside(directory, prod) or _inside(campaign_dir, prod) or _inside(prod, campaign_dir):
        raise CovmocksError(f"rehearsal directory {directory} would put the rehearsal in the "
                            f"production campaign's directory {prod}: give --directory "
                            "elsewhere")  # fmt: skip
    return directory


def simulation_box(production, realizations, redshifts) -> tuple[float, float, float, str]:
    """(box size in Mpc/h, h, Omega_M, where they came from) of an abacus or hdf5 campaign:
    abacusutils' metadata of the AbacusSummit simulation its input names, else the header of
    the first of its (rehearsed) input catalogs that exists."""
    sci = production.science
    first = sci.input_path(realizations[0], redshifts[0])
    if sci.source == "abacus":
        from covmocks.halos.abacus_layout import SIM_NAME

        names = [part for part in Path(first).parts if SIM_NAME.fullmatch(part)]
        if names:
            from abacusnbody.metadata import get_meta

            try:
                meta = get_meta(names[0], redshift=redshifts[0])
                return (float(meta["BoxSize"]), float(meta["H0"]) / 100.0,
                        float(meta["Omega_M"]), f"abacusutils metadata of {names[0]}")  # fmt: skip
            except (ValueError, KeyError):  # a name abacusutils does not know
                pass
    paths = [sci.input_path(r, z) for r in realizations for z in redshifts]
    found = next((p for p in paths if os.path.exists(p)), None)
    if found is None:
        raise CovmocksError(
            f"cannot find the box size and cosmology of {production.path}: "
            f"no input catalog at {first} (nor at the other rehearsed boxes' inputs)"
        )
    from covmocks.halos.abacus import AbacusSource
    from covmocks.halos.blocks import HDF5Source

    opened = AbacusSource(found) if sci.source == "abacus" else HDF5Source(found)
    hdr = opened.header
    return hdr.box_size, hdr.cosmology.h, hdr.cosmology.Om0, f"header of {found}"


def check_cosmology(h: float, om0: float, origin: str) -> None:
    """Refuse a cosmology the synthetic source cannot draw (AbacusSummit c000 only)."""
    from covmocks.halos.blocks import SYNTHETIC_COSMOLOGY as C

    if abs(h - C.h) > COSMOLOGY_TOLERANCE or abs(om0 - C.Om0) > COSMOLOGY_TOLERANCE:
        raise CovmocksError(f"the campaign's cosmology (h={h:g}, Omega_M={om0:g}; {origin}) is "
                            f"not the synthetic source's (AbacusSummit c000: h={C.h:g}, "
                            f"Omega_M={C.Om0:g}), which has no other cosmology yet")  # fmt: skip


def box_numbers(n_hosts, box_size, fraction, cut: float, z_default: float, z_shown: float):
    """(host fraction, box size in Mpc/h, hosts per box at ``z_shown``) of synthetic boxes
    of ``n_hosts`` or of ``box_size`` Mpc/h. ``fraction`` None: one (2 significant digits, at
    most 1) that puts about ``TARGET_HOSTS`` hosts in a box at ``z_default``."""
    from covmocks.halos.synthetic import SyntheticSource, synthetic_hosts

    if box_size is not None and fraction is None:
        full = synthetic_hosts(box_size, cut, z_default)
        fraction = 1.0 if full <= TARGET_HOSTS else float(f"{TARGET_HOSTS / full:.2g}")
    src = SyntheticSource(n_hosts, cut, z_shown, box_size=box_size, host_fraction=fraction or 1)
    return fraction, src.header.box_size, src.n_hosts


def _scaled(value: float, fraction: float) -> float:
    return float(f"{value * fraction:.12g}")


def _by_redshift(mapping: dict, labels: set[str]) -> dict:
    return {z: v for z, v in mapping.items() if redshift_label(float(z)) in labels}


def rehearsal_clustering(section: dict, labels: set[str], fraction: float, n: int) -> dict:
    """The ``clustering`` section for the snapshots ``labels``: per-redshift mappings and
    ``redshifts`` lists narrowed to them (a sample measured at none of them dropped), number
    densities times ``fraction``, ``calibration_boxes`` at most ``n``."""
    from covmocks.campaign.clustering import ClusteringSection

    out = copy.deepcopy(section)
    samples = []
    for s in out.get("samples") or []:
        if not isinstance(s, dict):
            samples.append(s)  # the schema reports it
            continue
        for key in ("threshold", "number_density"):
            if isinstance(s.get(key), dict):
                s[key] = _by_redshift(s[key], labels)
        if isinstance(s.get("redshifts"), list):
            s["redshifts"] = [z for z in s["redshifts"] if redshift_label(float(z)) in labels]
            if not s["redshifts"]:
                continue
        density = s.get("number_density")
        if isinstance(density, dict):
            s["number_density"] = {z: _scaled(v, fraction) for z, v in density.items()}
        elif isinstance(density, int | float):
            s["number_density"] = _scaled(density, fraction)
        samples.append(s)
    if not samples:
        raise CovmocksError("no clustering sample is measured at the rehearsed redshifts")
    out["samples"] = samples
    default = ClusteringSection.model_fields["calibration_boxes"].default
    boxes = out.get("calibration_boxes", default)
    out["calibration_boxes"] = min(boxes, n) if isinstance(boxes, int) else boxes
    return out


def rehearsal_data(data: dict, production, *, realizations, redshifts, directory: Path,
                   box_size: float | None, fraction: float | None) -> dict:  # fmt: skip
    """The rehearsal campaign file (plain data) of production file ``data``. ``box_size``
    None: a synthetic campaign's science is kept as it is."""
    science = data["science"]
    sci = {"source": "synthetic", "realizations": list(realizations),
           "redshifts": list(redshifts)}  # fmt: skip
    keep = ("n_hosts", "box_size", "host_fraction") if box_size is None else ()
    for key in (*keep, "log10_mhost_min_msun", "model", "model_params"):
        if key in science:
            sci[key] = copy.deepcopy(science[key])
    if box_size is not None:
        sci |= {"box_size": box_size, "host_fraction": fraction}
    execution = data.get("execution") or {}
    resources = data.get("resources") or {}
    labels = {redshift_label(z) for z in redshifts}
    res = {"nodes": 1, "ranks": resources.get("ranks", 1), "gpus": 0}
    by_z = _by_redshift(resources.get("by_redshift") or {}, labels)
    if by_z:
        res["by_redshift"] = {z: {**v, **{k: d for k, d in (("nodes", 1), ("gpus", 0))
                                          if k in v}} for z, v in by_z.items()}  # fmt: skip
    outputs = {"base": str(directory)}
    if "directory" in (data.get("outputs") or {}):
        outputs["directory"] = data["outputs"]["directory"]
    out = {
        "campaign": {k: v for k, v in data["campaign"].items() if k != "notify"},
        "science": sci,
        "execution": {"profile": "local", "max_in_flight": 2, "executor": LOCAL_EXECUTOR,
                      **{k: execution[k] for k in KEPT_EXECUTION if k in execution}},
        "resources": res,
        "outputs": outputs,
    }  # fmt: skip
    if data.get("clustering") is not None:
        out["clustering"] = rehearsal_clustering(data["clustering"], labels, fraction or 1.0,
                                                 len(realizations))  # fmt: skip
    return out


def run_rehearse(args: argparse.Namespace) -> int:
    """Derive, write and run the rehearsal campaign, then judge it: 0 passed, 1 failed."""
    import yaml

    from covmocks.box.spec import SYNTHETIC_MHOST_MIN
    from covmocks.campaign import Campaign

    production = Campaign.load(args.campaign)
    data = yaml.safe_load(Path(args.campaign).read_text(encoding="utf-8"))
    directory = rehearsal_directory(args.directory, production, data)
    realizations = list(production.science.realizations)[: args.realizations]
    if production.clustering is not None and len(realizations) < 2:
        raise CovmocksError(f"a covariance needs at least 2 realizations; the rehearsal of "
                            f"{production.name} would have {len(realizations)}")  # fmt: skip
    redshifts = choose_redshifts(production, args.redshifts)
    sci = production.science
    cut = SYNTHETIC_MHOST_MIN if sci.log10_mhost_min_msun is None else sci.log10_mhost_min_msun
    if sci.source == "synthetic":
        if args.hosts_fraction not in (None, 1.0):
            raise CovmocksError(f"--hosts-fraction: campaign {production.name}'s halos are "
                                "synthetic already: its boxes rehearse as they are")  # fmt: skip
        box_size, origin = None, "the campaign's synthetic source"
        given = (sci.n_hosts, sci.box_size, sci.host_fraction)
    else:
        box_size, h, om0, origin = simulation_box(production, realizations, redshifts)
        check_cosmology(h, om0, origin)
        given = (None, box_size, args.hosts_fraction)
    fraction, size, hosts = spawned(box_numbers, *given, cut, sci.redshifts[0], redshifts[0])
    scale = None if box_size is None else fraction  # a synthetic campaign's samples as they are
    text = yaml.safe_dump(rehearsal_data(data, production, realizations=realizations,
                                         redshifts=redshifts, directory=directory,
                                         box_size=box_size, fraction=scale),
                          sort_keys=False)  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "campaign.yaml"
    path.write_text(f"# covmocks rehearse {Path(args.campaign).resolve()}: derived, rewritten "
                    f"on every rehearsal\n{text}", encoding="utf-8")  # fmt: skip
    rehearsal = Campaign.load(path)
    print(f"rehearsal directory {rehearsal.directory}")
    print(f"{len(realizations)} realizations x {len(redshifts)} snapshots; synthetic halos "
          f"above 10^{cut:g} Msun")  # fmt: skip
    print(f"box size {size:.6g} Mpc/h ({origin}); host fraction {fraction or 1:g}; "
          f"{hosts:,} hosts per box at z={redshifts[0]:g}")  # fmt: skip
    if rehearsal.clustering is not None and (scale or 1) < 1:
        print(f"clustering: number densities x {fraction:g}, the same galaxy populations in "
              "that fraction of the hosts; threshold samples unchanged")  # fmt: skip
    return _run(rehearsal, monitoring=args.monitoring)


def _run(rehearsal, *, monitoring: bool) -> int:
    """Run the rehearsal (resuming), then judge its boxes and covariance."""
    from covmocks.catalog.validation import check_file
    from covmocks.core.interrupts import sigterm_raises
    from covmocks.workflow.driver import Runner
    from covmocks.workflow.plan import make_plan
    from covmocks.workflow.status import campaign_status

    with sigterm_raises():
        Runner(rehearsal, monitoring=monitoring).run()
    plan = make_plan(rehearsal)
    failed = {f["task"]: f for f in campaign_status(rehearsal, plan).failed}
    problems = [
        f"{t.task_id}: failed: {failed[t.task_id]['error']} (log {failed[t.task_id]['log']})"
        if t.task_id in failed
        else f"{t.task_id}: {t.state}, not done"
        for t in plan.tasks
        if t.state != "done"
    ]
    problems += [f"{t.task_id}: {line}" for t in plan.select("done")
                 for line in check_file(t.output)]  # fmt: skip
    if rehearsal.clustering is None:
        if not problems:
            print("rehearsal passed (no clustering section: no covariance)")
            return 0
    elif plan.select("done"):
        problems += _judge_covariance(rehearsal, passed=not problems)
    for line in problems:
        print(f"problem: {line}")
    if problems:
        print(f"rehearsal failed: {len(problems)} problems ({rehearsal.directory})")
        return 1
    print("rehearsal passed")
    return 0


def _judge_covariance(rehearsal, passed: bool) -> list[str]:
    """Build the covariance and judge it: its problems; its summary printed where none."""
    from covmocks.covariance import ensemble
    from covmocks.covariance.verdict import summary, verdict

    try:
        path = ensemble.build(rehearsal)
    except CovmocksError as exc:
        return [f"covariance: {exc}"]
    print(f"covariance {path}")
    tree = ensemble.read(path)
    problems = verdict(tree, rehearsal)
    if passed and not problems:
        for line in summary(tree):
            print(line)
    return problems
