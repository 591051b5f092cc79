"""``covmocks generate``: one box's arguments, the ``BoxSpec`` they describe, and the box made
and checked. A catalog that fails validation (``covmocks.catalog.validation``) is not left under its
name as if it were good: it is removed, with its statistics and sample files, and the
command fails naming the checks and the halo input. With ``--overwrite``, the files it
replaces are kept aside until the new catalog validates (``kept_aside``)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path

from covmocks.core import limits
from covmocks.core.errors import CovmocksError
from covmocks.core.oneline import OneLineParser

log = logging.getLogger(__name__)


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of one box (``covmocks generate``, ``python -m covmocks.cli.generate_mpi``)."""

    p.add_argument("--campaign", type=Path, help="campaign file: regenerate its box --task")
    p.add_argument("--task", help="with --campaign: the task id, e.g. r0001_z0.500")
    p.add_argument("--source", choices=limits.SOURCE_KINDS, help="halo source kind")
    p.add_argument("--input", help="halo catalog: Abacus zZ.ZZZ directory or HDF5 file")
    p.add_argument("--cleaning", help="abacus: cleaning root of the merger-tree-cleaned catalog")
    p.add_argument("--n-hosts", type=int, help="synthetic source: number of host halos")
    p.add_argument("--box-size", type=float,
                   help="synthetic source, instead of --n-hosts: box size (Mpc/h)")  # fmt: skip
    p.add_argument("--host-fraction", type=float, help="with --box-size: the fraction (0 < F "
                   "<= 1, default 1) of the hosts the mass function puts in the box")  # fmt: skip
    p.add_argument(
        "--redshift", type=float, help="snapshot redshift (checked against the catalog header)"
    )
    p.add_argument("--output", type=Path, required=True, help="output HDF5 catalog")
    p.add_argument("--seed", type=int, help="campaign random seed (default 0)")
    p.add_argument("--realization", type=int, help="realization id (default 0)")
    p.add_argument(
        "--snapshot", type=int, help="snapshot id for the random stream (default: round(1000 z))"
    )
    p.add_argument(
        "--log10-mhost-min-msun",
        type=float,
        help="host mass cut, log10(Msun) without h (default: none; synthetic: "
        f"{limits.SYNTHETIC_MHOST_MIN})",
    )
    p.add_argument("--host-limit", type=int, help="use only the first N hosts (after the cut)")
    p.add_argument(
        "--chunk-hosts", type=int, help=f"hosts per chunk (memory; default {limits.CHUNK_HOSTS})"
    )
    p.add_argument("--model", help="galaxy model name (default diffsky_sfh)")
    p.add_argument(
        "--model-params", type=json.loads, metavar="JSON",
        help='model parameters as a JSON object, e.g. \'{"batch_max": 4096}\'',
    )  # fmt: skip
    p.add_argument("--compression", choices=limits.COMPRESSIONS, help="default gzip")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--statistics", type=Path, help="write the box's statistics file here")
    p.add_argument(
        "--samples",
        type=Path,
        help="write the galaxies of the clustering samples here (with --sample-rules)",
    )
    p.add_argument("--sample-rules", type=json.loads, metavar="JSON",
                   help='what --samples keeps: a JSON list of {"name", "select" (all, sfr, '
                   'mstar), "floor" or "density" [(h/Mpc)^3]}')  # fmt: skip
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("-q", "--quiet", action="store_true")


BOX_FIELDS = ("source", "input", "cleaning", "n_hosts", "box_size", "host_fraction", "seed",
              "realization", "redshift", "snapshot", "log10_mhost_min_msun", "model",
              "model_params", "chunk_hosts", "host_limit", "compression",
              "sample_rules")  # fmt: skip


def box_spec(args: argparse.Namespace):
    """``generate`` arguments -> the BoxSpec they describe, checked; bad input raises.

    With ``--campaign`` and ``--task``: that campaign box, written to ``--output``
    (other box arguments are refused: the campaign fixes them)."""
    from covmocks.box.spec import BoxSpec

    given = {k: getattr(args, k) for k in BOX_FIELDS if getattr(args, k) is not None}
    if args.campaign is not None or args.task is not None:
        if args.campaign is None or args.task is None or given:
            extra = " ".join(f"--{k.replace('_', '-')}" for k in given)
            extra = f"; got {extra}" if extra else ""
            raise CovmocksError("--campaign and --task go together, and with them only --output, "
                                f"--overwrite, --statistics and --samples{extra}")  # fmt: skip
        return _campaign_box(args)
    if args.source is None:
        raise CovmocksError("--source is required (or --campaign and --task)")
    spec = BoxSpec(output=args.output, overwrite=args.overwrite, statistics=args.statistics,
                   samples=args.samples, **given)  # fmt: skip
    spec.check()
    return spec


def _campaign_box(args: argparse.Namespace):
    from covmocks.campaign import Campaign
    from covmocks.workflow.metadata import refuse_if_released
    from covmocks.workflow.plan import find_task

    campaign = Campaign.load(args.campaign)
    spec = find_task(campaign, args.task)
    root = campaign.layout.root.resolve()
    written = (args.output, args.statistics, args.samples)
    if any(p is not None and p.resolve().is_relative_to(root) for p in written):
        refuse_if_released(campaign)  # nothing is written into a released version
    # the campaign's statistics and sample files stay the campaign's: only --statistics
    # and --samples write them
    return dataclasses.replace(spec, output=args.output, overwrite=args.overwrite,
                               statistics=args.statistics, samples=args.samples,
                               sample_rules=spec.sample_rules if args.samples else ())  # fmt: skip


def generate_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """A parser of one box's arguments (``generate_box`` then turns them into a BoxSpec)."""
    parser = OneLineParser(prog=prog, description=description)
    add_generate_arguments(parser)
    return parser


def compilation_cache(args: argparse.Namespace) -> Path | None:
    """The compilation cache a box of ``args`` uses: with ``--campaign``, the campaign's
    ``execution.compilation_cache`` (the one its tasks use, so a box made again by id loads
    their kernels); None otherwise (``jaxenv.cache_dir`` chooses)."""
    from covmocks.campaign import Campaign

    return Campaign.load(args.campaign).compilation_cache if args.campaign else None


def run_generate(args: argparse.Namespace) -> int:
    from covmocks.box import populate
    from covmocks.galaxies import jaxenv, registry

    spec = box_spec(args)
    check_outputs(spec)
    jaxenv.use_cache(compilation_cache(args), spec.batch_lengths())
    source = spec.open_source()
    spec = spec.resolved(source.header)
    with kept_aside(spec) as fresh:
        summary = populate.generate_box(
            source, registry.get_model(fresh.model, fresh.model_params), fresh
        )
        check_box(fresh, source)
    print(json.dumps(summary))
    return 0


def check_outputs(spec) -> None:
    """Fail early where the catalog, statistics or sample file cannot be written (the
    latter two are replaced)."""
    from covmocks.catalog import hdf5

    hdf5.check_output_path(spec.output, spec.overwrite)
    for path in (spec.statistics, spec.samples):
        if path is not None:
            hdf5.check_output_path(path, overwrite=True)


@contextlib.contextmanager
def kept_aside(spec):
    """With ``--overwrite``: move the box's existing catalog, statistics and sample files
    aside (``.<name>.old-<pid>``) while the new box is made, and yield the spec to make it
    with. Once the new catalog validates the old files are removed; where it fails or is
    interrupted, the old files are put back (over what the new box wrote). Killed by a
    signal, the command leaves the old files under the names it logged."""
    moved = []
    try:
        for path in box_files(spec) if spec.overwrite else ():
            if path.is_file():
                aside = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, aside)
                moved.append((aside, path))
                log.info("kept %s aside as %s until the new box validates", path, aside)
        yield dataclasses.replace(spec, overwrite=False)
    except BaseException:  # the new box's failed files are removed where they fail
        for aside, path in moved:
            os.replace(aside, path)
        raise
    for aside, _ in moved:
        aside.unlink()


def box_files(spec) -> list[Path]:
    """The files a box writes: its catalog, and its statistics and sample files where set."""
    return [p for p in (spec.output, spec.statistics, spec.samples) if p is not None]


def discard(spec) -> None:
    """Remove what a box wrote (``box_files``)."""
    for path in box_files(spec):
        path.unlink(missing_ok=True)


def check_box(spec, source) -> None:
    """Validate the catalog just written (``validation.check_file``); where it fails, remove
    it (``discard``) and raise ``ValidationError`` naming the failed checks and the input."""
    from covmocks.catalog import validation

    failures = validation.check_file(spec.output)
    if failures:
        discard(spec)
        raise validation.ValidationError(
            f"{spec.output}: the catalog made from {source.describe()} failed validation and "
            f"was removed: {'; '.join(failures)}"
        )
