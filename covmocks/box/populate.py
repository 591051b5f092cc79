"""One box: halo source -> galaxy model -> catalog file, and the populate-and-write loop that
``covmocks.box.mpi`` runs on each rank's share.

Hosts are processed in chunks of at most ``spec.chunk_hosts`` (peak memory follows the chunk,
not the box). Because every random draw is keyed by host id, the catalog is
bit-identical whatever the chunk size or the number of processes.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from covmocks.box.overlap import BehindWriter, prefetched
from covmocks.box.probe import open_probe, probe_fraction, run_probe
from covmocks.catalog import hdf5
from covmocks.catalog.completeness import HISTOGRAM_OF, limit_name
from covmocks.catalog.summary import BoxStatistics
from covmocks.clustering.samples import SampleCollector
from covmocks.core import provenance
from covmocks.galaxies.diffsky import CosmicTimes, snapshot_key

# Statistics summary values that the catalog's attributes (and the sample files) carry too.
COMPLETENESS_ATTRS = (
    *(f"{limit_name(x)}{end}" for x in HISTOGRAM_OF for end in ("", "_missing", "_missing_err")),
    "completeness_probe_fraction", "completeness_probe_dex", "completeness_definition",
)  # fmt: skip

log = logging.getLogger(__name__)


def limit_hosts(blocks, host_limit: int | None):
    """``blocks`` cut after ``host_limit`` hosts; empty blocks are dropped."""
    remaining = np.inf if host_limit is None else host_limit
    for block in blocks:
        if remaining <= 0:
            return
        if len(block) > remaining:
            block = block.select(slice(0, int(remaining)))
        remaining -= len(block)
        if len(block):
            yield block


def catalog_columns(galaxies: dict, hosts, first_row: int) -> dict:
    """Model output for one block -> the catalog schema, host indices counted from
    ``first_row`` (the row of the block's first galaxy in its file)."""
    central_rows = np.flatnonzero(galaxies["is_central"])
    log10_mstar = galaxies["log10_mstar"]
    return {
        "pos": galaxies["pos"],
        "vel": galaxies["vel"],
        "is_central": galaxies["is_central"],
        "host_index": first_row + central_rows[galaxies["host_local"]],
        "halo_id": hosts.ids[galaxies["host_local"]],
        "log10_mhalo": galaxies["log10_mhalo"],
        "log10_mpeak": galaxies["log10_mpeak"],
        "log10_mstar": log10_mstar,
        "log10_mstar_surviving": galaxies["log10_mstar_surviving"],
        "log10_sfr": galaxies["log10_sfr"],
        "log10_ssfr": galaxies["log10_sfr"] - log10_mstar,
        "is_quenched": galaxies["is_quenched"],
        "diffstar_quenched_branch": galaxies["diffstar_quenched_branch"],
    }


def check_resolved(spec) -> None:
    """A box is generated from a resolved spec: its redshift and snapshot id are known."""
    if spec.snapshot is None or spec.redshift is None:
        raise ValueError("a box needs a resolved spec (BoxSpec.resolved): redshift and snapshot")


def populate(blocks, model, snap: CosmicTimes, root, writer, stats: BoxStatistics,
             host_limit: int | None = None,
             samples: SampleCollector | None = None) -> dict:  # fmt: skip
    """Populate host ``blocks`` (in catalog order) with ``model``, append their galaxies to
    ``writer`` (a ``catalog.hdf5.CatalogWriter``; host indices count from its row), count them
    in ``stats`` and offer them to ``samples`` (rows counted from the writer's).

    The one populate-and-write loop: a whole box (``generate_box``) and one MPI work unit
    (``covmocks.box.mpi``) both run it. I/O overlaps compute (``covmocks.box.overlap``): the next
    block is read and the previous chunk counted and written in background threads while the
    model populates the current one; chunks are written in order, and the writer is done
    with when this returns. Returns ``n_rows``, ``n_hosts``, ``n_satellites``.
    """
    first_row = row = writer.n
    n_hosts = n_sats = 0

    def store(columns: dict, row: int) -> None:
        stats.add(columns, row)
        if samples is not None:
            samples.add(columns, row)
        writer.append(columns)

    with contextlib.closing(prefetched(limit_hosts(blocks, host_limit))) as chunks, \
            BehindWriter() as behind:  # fmt: skip
        for i, hosts in enumerate(chunks):
            t0 = time.perf_counter()
            galaxies = model.populate(hosts, snap, root)
            columns = catalog_columns(galaxies, hosts, row)
            behind.submit(store, columns, row)
            row += len(columns["is_central"])
            n_hosts += len(hosts)
            n_sats += int((~galaxies["is_central"]).sum())
            log.info(
                "chunk %d: %d hosts -> %d galaxies in %.2f s (total %d hosts)",
                i, len(hosts), len(galaxies["is_central"]), time.perf_counter() - t0, n_hosts,
            )  # fmt: skip
    if writer.n != row:
        raise RuntimeError(f"the writer holds {writer.n - first_row} rows, {row - first_row} sent")
    return {"n_rows": row - first_row, "n_hosts": n_hosts, "n_satellites": n_sats}


def totals(counts: list[dict]) -> dict:
    """File attributes of a box's host and satellite counts (of one or many ``populate``)."""
    n_hosts = sum(c["n_hosts"] for c in counts)
    n_sats = sum(c["n_satellites"] for c in counts)
    return {"n_hosts": n_hosts, "n_centrals": n_hosts, "n_satellites": n_sats}


def summary(spec, counts: list[dict]) -> dict:
    """What ``generate_box`` returns (before its wall time)."""
    t = totals(counts)
    n_gal = t["n_hosts"] + t["n_satellites"]
    return {"output": str(spec.output), "n_hosts": t["n_hosts"], "n_galaxies": n_gal,
            "n_satellites": t["n_satellites"]}  # fmt: skip


def catalog_attrs(source, model, snap: CosmicTimes, spec) -> dict:
    """File attributes: simulation, snapshot, randomness, model, input and software."""
    hdr = snap.header
    c = hdr.cosmology
    return {
        "box_size": hdr.box_size,
        "box_size_units": "comoving Mpc/h",
        "h": c.h,
        "Om0": c.Om0,
        "omega_b": c.omega_b,
        "fb": c.fb,
        "w0": c.w0,
        "wa": c.wa,
        "redshift": hdr.redshift,  # the catalog header's: the physics uses it
        "snapshot_redshift": spec.redshift,  # the nominal one the task names
        "hubble_e": hdr.hubble_e,
        "hubble_e_definition": "H(z)/H0 at the snapshot: the simulation's HubbleNow where its "
        "header has it, else flat w0waCDM without radiation",
        "t_obs_gyr": snap.t_obs,
        "t0_gyr": snap.t0,
        "realization": spec.realization,
        "snapshot": spec.snapshot,
        "seed": spec.seed,
        "random_keying": "fold_in(fold_in(fold_in(PRNGKey(seed), realization), snapshot), host id)",
        "model_name": model.name,
        "model_version": model.version,
        "model_params": model.params,
        "input_catalog": source.describe(),
        "sim_name": hdr.sim_name,
        "mass_definition": hdr.mass_definition,
        "position_definition": hdr.position_definition,
        "radius_definition": hdr.radius_definition,
        "input_notes": hdr.notes,
        "log10_mhost_min_msun": source.log10_mhost_min_msun,
        "host_limit": spec.host_limit,
        "versions": provenance.software_versions(),
        "jax_platform": provenance.jax_platform(),
        "created_utc": provenance.utc_now(),
    }


def probe_box(spec, source, model, snap, root, stats: BoxStatistics, counts: list[dict],
              units=None) -> dict:  # fmt: skip
    """Run the box's completeness probe (``covmocks.box.probe``; this process's probe units
    ``units(n_units)``, None: all) into ``stats``, after the box's hosts are ``counts``.
    Returns ``run_probe``'s counts and ``fraction``, the probe's sampling fraction (NaN: no
    probe), which ``statistics_summary`` takes."""
    probe = open_probe(spec, source, probe_fraction(totals(counts)["n_hosts"]))
    done = run_probe(probe, model, snap, root, stats, spec, units)
    return done | {"fraction": np.nan if probe is None else probe.fraction}


def statistics_summary(stats: BoxStatistics, source, model, fraction: float) -> dict:
    """``BoxStatistics.summary`` of a box of ``source`` populated by ``model``, its
    completeness probe sampled at ``fraction`` (``probe_box``)."""
    hdr = source.header
    return stats.summary(
        box_size=hdr.box_size, h=hdr.cosmology.h, log10_mhost_min_msun=source.log10_mhost_min_msun,
        log10_msub_min_msun=model.params.get("log10_msub_min_msun", -np.inf),
        probe_fraction=fraction,
    )  # fmt: skip


IDENTITY = ("realization", "snapshot", "redshift", "snapshot_redshift", "seed", "model_name",
            "model_version", "box_size", "h", "Om0", "t_obs_gyr", "hubble_e")  # fmt: skip


def write_statistics(spec, stats: BoxStatistics, summary: dict, attrs: dict,
                     samples: SampleCollector | None = None) -> None:  # fmt: skip
    """Write the box's statistics to ``spec.statistics`` and its sample galaxies to
    ``spec.samples`` (where set) with what identifies the box (the catalog's ``attrs``)."""
    identity = {**{k: attrs[k] for k in IDENTITY}, "catalog": str(spec.output)}
    if spec.statistics is not None:
        stats.write(spec.statistics, {**identity, **summary})
    if spec.samples is not None and samples is not None:
        samples.write(spec.samples, {**identity, "task_id": spec.task_id,
                                     **{k: summary[k] for k in COMPLETENESS_ATTRS}})  # fmt: skip


def generate_box(source, model, spec) -> dict:
    """Populate every host of ``source`` with ``model`` and write one catalog to
    ``spec.output``. ``spec``: a resolved ``box.spec.BoxSpec`` (``spec.resolved(source.header)``).

    Returns a summary: counts, wall time, the output path and ``probe`` (``probe_box``).
    """
    t_start = time.perf_counter()
    check_resolved(spec)
    hdf5.check_output_path(spec.output, spec.overwrite)
    snap = CosmicTimes.from_header(source.header)
    root = snapshot_key(spec.seed, spec.realization, spec.snapshot)
    attrs = catalog_attrs(source, model, snap, spec)
    stats = BoxStatistics()
    samples = SampleCollector(spec.sample_rules, source.header.box_size)
    try:
        with hdf5.CatalogWriter(
            spec.output, attrs, compression=spec.compression, overwrite=spec.overwrite
        ) as writer:
            blocks = source.iter_blocks(spec.chunk_hosts)
            counts = [populate(blocks, model, snap, root, writer, stats, spec.host_limit,
                               samples)]  # fmt: skip
            probed = probe_box(spec, source, model, snap, root, stats, counts)
            stats_summary = statistics_summary(stats, source, model, probed["fraction"])
            writer.attrs.update(totals(counts), halo_cleaning=source.cleaning_record(),
                                **{k: stats_summary[k] for k in COMPLETENESS_ATTRS})  # fmt: skip
            # before the catalog is published: a catalog on disk always has its statistics
            write_statistics(spec, stats, stats_summary, attrs, samples)
    except BaseException:
        if not spec.output.exists():  # no catalog (e.g. a full disk): no statistics either
            for path in (spec.statistics, spec.samples):
                if path is not None:
                    path.unlink(missing_ok=True)
        raise
    result = summary(spec, counts) | {"wall_s": time.perf_counter() - t_start, "probe": probed}
    log.info("wrote %s: %d galaxies from %d hosts in %.1f s", spec.output,
             result["n_galaxies"], result["n_hosts"], result["wall_s"])  # fmt: skip
    return result
