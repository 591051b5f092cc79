"""``python -m covmocks.cli.generate_mpi``: ``covmocks generate`` on every rank of
MPI_COMM_WORLD (under mpiexec or srun), one box split over the ranks (``covmocks.box.mpi``).

Rank 0 parses the arguments, opens the source and checks the model; every rank then takes
its share. Errors end every rank with one line from rank 0 (``covmocks.box.mpisync``).
"""

from __future__ import annotations

import json
import logging
import sys

import covmocks  # noqa: F401  (configures XLA before anything imports jax)
from covmocks.box.mpi import generate_box_mpi
from covmocks.box.mpisync import Guard, RankFailure, abort
from covmocks.galaxies import jaxenv

log = logging.getLogger("covmocks.box.mpi")


def _setup_logging(args, rank: int, size: int) -> None:
    verbose = -1 if args.quiet else args.verbose
    if rank != 0:
        verbose -= 1  # other ranks: warnings only, unless -v
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s [rank {rank}/{size}] %(name)s: %(message)s",
    )
    logging.getLogger("jax").setLevel(logging.WARNING)


def build_parser():
    from covmocks.cli.generate import generate_parser

    return generate_parser(
        "python -m covmocks.cli.generate_mpi",
        "Populate one halo catalog with galaxies using every rank of MPI_COMM_WORLD "
        "(run under mpiexec or srun); same arguments and output as `covmocks generate`.",
    )


def _open_box(args):
    """Rank 0: the box spec of ``args``, its source opened and the spec resolved, and its
    compilation cache (``generate.compilation_cache``); the model name is checked here, once."""
    from covmocks.cli.generate import box_spec, compilation_cache
    from covmocks.galaxies.registry import get_model

    spec = box_spec(args)
    source = spec.open_source()
    spec = spec.resolved(source.header)
    get_model(spec.model, spec.model_params)
    return source, spec, compilation_cache(args)


def _run(comm, argv) -> int:
    from covmocks.galaxies.registry import get_model

    rank = comm.rank
    args, status = None, None
    if rank == 0:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error already printed
            status = exc.code if isinstance(exc.code, int) else 2
    args, status = comm.bcast((args, status), root=0)
    if status is not None:
        return status
    _setup_logging(args, rank, comm.size)

    guard = Guard(comm, name_rank=False)
    source = spec = cache = None
    with guard:
        if rank == 0:
            source, spec, cache = _open_box(args)
    try:
        guard.check()
        source, spec, cache = comm.bcast((source, spec, cache), root=0)
        # once the inputs are known good: a bad one fails in one line
        jaxenv.use_cache(cache, spec.batch_lengths())
        guard = Guard(comm)
        with guard:
            model = get_model(spec.model, spec.model_params)
        guard.check()
        summary = generate_box_mpi(comm, source, model, spec)
    except RankFailure as exc:
        if rank == 0:
            print(f"covmocks: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if rank == 0:
        print(json.dumps(summary))
    return 0


def main(argv=None) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        return _run(comm, argv)
    except KeyboardInterrupt:
        if comm.size == 1:
            print("covmocks: interrupted", file=sys.stderr)
            return 130
        abort(comm, "interrupted", 130)
    except Exception as exc:
        if comm.size == 1:
            raise
        log.error("rank %d failed", comm.rank, exc_info=exc)
        abort(comm, f"{type(exc).__name__}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
