"""The ``covmocks`` command: one subcommand per verb, one-line errors for bad input."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from covmocks.cli import rehearse
from covmocks.cli import release as release_verbs
from covmocks.cli.arguments import campaign_arguments, positive, seconds
from covmocks.cli.generate import (  # noqa: F401 (the generate verb; mpibox, generate use them)
    BOX_FIELDS,
    add_generate_arguments,
    box_spec,
    generate_parser,
    run_generate,
)
from covmocks.core.errors import ConfigError, CovmocksError
from covmocks.core.interrupts import sigterm_raises
from covmocks.core.oneline import OneLineParser, escape_breaks
from covmocks.galaxies import jaxenv

log = logging.getLogger("covmocks")


def _size(n_bytes: float) -> str:
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    power = 0
    while n_bytes >= 1000 and power < len(units) - 1:
        n_bytes /= 1000
        power += 1
    return f"{n_bytes:.3g} {units[power]}"


def run_plan(args: argparse.Namespace) -> int:
    from covmocks.campaign import Campaign
    from covmocks.workflow.driver_lock import DriverLock
    from covmocks.workflow.metadata import write_plan

    campaign = Campaign.load(args.campaign)
    with DriverLock(campaign.layout.lock, "covmocks plan"):  # never beside a running driver
        plan = write_plan(campaign)
    sci, counts = campaign.science, plan.counts
    print(f"campaign {campaign.name} version {campaign.version}: {len(plan.tasks)} tasks "
          f"({len(sci.realizations)} realizations x {len(sci.redshifts)} snapshots)")  # fmt: skip
    print(f"directory {campaign.directory}")
    print(f"manifest  {campaign.layout.manifest}")
    print(" ".join(f"{state} {n}" for state, n in counts.items()))
    missing = plan.missing_inputs()
    if missing:
        print(f"blocked until {len(missing)} inputs appear (halo or cleaned catalogs), e.g.:")
        for path in missing[:3]:
            print(f"  {path}")
    if args.verify_inputs:  # reads only: outside the lock
        from covmocks.workflow.plan import verify_inputs

        found = verify_inputs(plan, progress=not args.quiet)
        for line in found.mismatches:
            print(line)
        print(f"verified {found.files} input files ({_size(found.n_bytes)}) in "
              f"{found.directories} directories: {len(found.mismatches)} mismatches")  # fmt: skip
        if found.unchecked:
            print(f"not verified: {len(found.unchecked)} directories without checksums.crc32, "
                  f"e.g. {found.unchecked[0]}")  # fmt: skip
        return 1 if found.mismatches else 0
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    from covmocks.campaign import Campaign
    from covmocks.workflow.estimate import estimate
    from covmocks.workflow.plan import make_plan

    campaign = Campaign.load(args.campaign)
    plan = make_plan(campaign)
    est = estimate(campaign, plan, args.nodes)
    counts = " ".join(f"{state} {n}" for state, n in plan.counts.items())
    print(
        f"campaign {campaign.name} version {campaign.version}: {len(plan.tasks)} tasks ({counts})"
    )
    print(f"basis       {est.basis}")
    print(f"remaining   {est.remaining} tasks, {est.seconds_per_task:.0f} s each on average")
    print(f"node-hours  {est.node_hours:.1f}")
    print(f"GPU-hours   {est.gpu_hours:.1f}")
    print(f"storage     {_size(est.storage_bytes)} to write ({_size(est.done_bytes)} on disk "
          "now; every file a box and the run write)")  # fmt: skip
    wall = f"{est.wall_s / 60:.0f} min" if est.wall_s < 7200 else f"{est.wall_s / 3600:.1f} h"
    print(f"wall-clock  {wall} on {est.nodes} node(s), {est.busy_nodes:.3g} busy with at most "
          f"{campaign.execution.max_in_flight} tasks in flight (no queue wait)")  # fmt: skip
    return 0


def run_config_show(args: argparse.Namespace) -> int:
    from covmocks.campaign import Campaign, format_path

    campaign = Campaign.load(args.campaign)
    rows = [(f"{format_path(path)}: {json.dumps(entry.value, default=str)}", entry.source)
            for path, entry in campaign.entries.items()]  # fmt: skip
    width = min(max((len(text) for text, _ in rows), default=0), 72)
    print(f"# {args.campaign}: merged configuration; later tiers win: default -> profile file "
          "-> campaign file -> override")  # fmt: skip
    for text, source in rows:
        print(f"{text:<{width}}  # {source}")
    return 0


def _threshold_text(item) -> str:
    """``name >= x`` for a fixed threshold; what thresholds.json holds where it is no number
    (a hand-edited file), rather than a traceback."""
    name, x = item
    number = isinstance(x, int | float) and not isinstance(x, bool)
    return f"{name} >= {x:.4f}" if number else f"{name}: {x!r} (not a number)"


def run_status(args: argparse.Namespace) -> int:
    from covmocks.campaign import Campaign
    from covmocks.workflow.status import campaign_status

    campaign = Campaign.load(args.campaign)
    status = campaign_status(campaign)
    if args.json:
        print(json.dumps(status.as_dict(), indent=1))
        return 0
    total = sum(status.counts.values())
    print(f"campaign {campaign.name} version {campaign.version}: {total} tasks; "
          f"driver: {status.driver or 'not running'}")  # fmt: skip
    states = list(status.counts)
    print(f"{'redshift':>8} " + " ".join(f"{s:>10}" for s in states))
    for z, counts in sorted(status.by_redshift.items()):
        print(f"{z:>8} " + " ".join(f"{counts[s]:>10}" for s in states))
    print(f"{'all':>8} " + " ".join(f"{status.counts[s]:>10}" for s in states))
    eta = "unknown" if status.eta_s is None else f"{status.eta_s / 3600:.2f} h"
    print(f"done in the last hour: {status.done_last_hour}; ETA {eta}")
    for f in status.failed:
        print(f"failed {f['task']}: {f['error']} (log {f['log']})")
    for tid in status.catalogs_lost:
        print(f"catalog gone (its QA record stays), to make again: {tid}")
    if status.set_aside:
        print(f"set aside (made, no longer in the campaign; kept): {len(status.set_aside)}: "
              f"{', '.join(status.set_aside)}")  # fmt: skip
    if status.clustering is not None:
        c = status.clustering
        fixed = "; ".join(f"z={z}: " + ", ".join(map(_threshold_text, e.items()))
                          for z, e in sorted(c["thresholds"].items()))  # fmt: skip
        print(f"clustering measured for {c['measured']} of {c['done']} done boxes; "
              f"thresholds fixed: {fixed or 'none yet'}")  # fmt: skip
    if args.outliers:  # reads every box's statistics file: seconds per thousand boxes
        from covmocks.report import outliers
        from covmocks.report.records import load_records

        records = load_records(campaign)[0]
        for z, group in outliers.by_snapshot(records):
            if len(group) < outliers.MIN_BOXES:
                print(f"outliers z={z}: too few boxes to judge ({len(group)} done, "
                      f"{outliers.MIN_BOXES} needed)")  # fmt: skip
        found = outliers.find(records)
        for f in found:
            print(f"outlier {f.task_id} z={f.redshift:g}: {f.statistic} {f.value:.4g}, other "
                  f"boxes {f.mean:.4g} +- {f.std:.2g} ({f.sigmas:+.1f} std)")  # fmt: skip
        if records and not found:
            print(f"outliers: none beyond {outliers.N_SIGMA:g} std in the snapshots judged")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Write the campaign report (qa/report.html); with --watch, rebuild it until Ctrl-C or
    until the campaign is done and no driver runs."""
    from covmocks.campaign import Campaign
    from covmocks.report import page

    campaign = Campaign.load(args.campaign)
    if args.watch is None:
        print(page.build_report(campaign))
        return 0
    print(f"rebuilding {campaign.layout.report} every {args.watch:g} s (Ctrl-C stops)")
    try:
        page.watch(campaign, args.watch)
    except KeyboardInterrupt:
        pass
    return 0


def run_covariance(args: argparse.Namespace) -> int:
    """Assemble the clustering covariance of the boxes finished so far (covariance.hdf5)."""
    from covmocks.campaign import Campaign
    from covmocks.covariance import ensemble

    campaign = Campaign.load(args.campaign)
    if campaign.clustering is None:
        raise CovmocksError(f"{campaign.path}: no clustering section: nothing is measured")
    print(ensemble.build(campaign))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """One line per failed check of each catalog; exit status 1 if any failed."""
    from covmocks.catalog.validation import check_file

    failed = 0
    for path in args.catalogs:
        lines = check_file(path)
        failed += bool(lines)
        for line in lines:
            print(f"{path}: {line}")
        if not lines and not args.quiet:
            print(f"{path}: passed")
    return 1 if failed else 0


def run_campaign(args: argparse.Namespace, retry: list[str] | None = None) -> int:
    from covmocks.campaign import Campaign
    from covmocks.workflow.driver import Runner
    from covmocks.workflow.status import campaign_status

    campaign = Campaign.load(args.campaign)
    if args.dry_run:
        from covmocks.workflow.dryrun import dry_run

        return dry_run(campaign, monitoring=not args.no_monitoring, retry=retry)
    cache = jaxenv.cache_dir(campaign.compilation_cache)
    if not jaxenv.cache_usage(cache)[0]:
        log.info("compiling the model's kernels once (minutes on a small CPU): they are "
                 "cached in %s for every later box and campaign", cache)  # fmt: skip
    with sigterm_raises():
        outcome = Runner(campaign, monitoring=not args.no_monitoring, retry=retry).run()
    status = campaign_status(campaign)
    print(" ".join(f"{k}={v}" for k, v in status.counts.items() if v))
    layout = campaign.layout
    print(f"catalogs  {layout.catalogs}\nstatus    covmocks status {campaign.path}\n"
          f"report    covmocks report {campaign.path}  (writes {layout.report})\n"
          f"kernels   {jaxenv.describe(cache)}")  # fmt: skip
    return 1 if outcome["failed"] else 0


def run_retry(args: argparse.Namespace) -> int:
    return run_campaign(args, retry=args.tasks or ["all"])


DRY_RUN_HELP = "plan, write the batch scripts, print the Parsl configuration; start nothing"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="covmocks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="populate one halo catalog and write one galaxy catalog")
    add_generate_arguments(gen)
    gen.set_defaults(func=run_generate)
    rep = sub.add_parser("report", help="write the campaign report qa/report.html")
    campaign_arguments(rep)
    rep.add_argument("--watch", type=seconds, metavar="SECONDS",
                     help="rebuild it every SECONDS while the campaign runs")  # fmt: skip
    rep.set_defaults(func=run_report)
    cov = sub.add_parser("covariance", help="assemble the clustering covariance of the boxes "
                         "finished so far")  # fmt: skip
    campaign_arguments(cov)
    cov.set_defaults(func=run_covariance)
    val = sub.add_parser("validate", help="check galaxy catalogs: one line per failed check")
    val.add_argument("catalogs", nargs="+", type=Path, help="HDF5 galaxy catalogs")
    val.add_argument("-v", "--verbose", action="count", default=0)
    val.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    val.set_defaults(func=run_validate)
    plan = sub.add_parser("plan", help="validate a campaign, write its directory and manifest")
    campaign_arguments(plan)
    plan.add_argument("--verify-inputs", action="store_true",
                      help="also check the CRC of every AbacusSummit file the boxes read against "
                      "its directory's checksums.crc32; exit status 1 on a mismatch")  # fmt: skip
    plan.set_defaults(func=run_plan)
    est = sub.add_parser("estimate", help="node-hours, GPU-hours, storage, wall-clock time")
    campaign_arguments(est)
    est.add_argument("--nodes", type=positive, help="nodes (default: the profile's maximum)")
    est.set_defaults(func=run_estimate)
    config = sub.add_parser("config", help="inspect a campaign's configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="merged values and where each came from")
    campaign_arguments(show)
    show.set_defaults(func=run_config_show)
    runp = sub.add_parser("run", help="run a campaign through Parsl (= python -m covmocks.run)")
    campaign_arguments(runp)
    runp.add_argument("--no-monitoring", action="store_true", help="no Parsl monitoring database")
    runp.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    runp.set_defaults(func=run_campaign)
    status = sub.add_parser("status", help="counts by state, throughput, ETA, failed tasks")
    campaign_arguments(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--outliers", action="store_true",
                        help="name boxes whose number density or stellar mass function "
                        "lies more than 5 std off the other boxes of their snapshot "
                        "(snapshots of at least 5 boxes)")  # fmt: skip
    status.set_defaults(func=run_status)
    retry = sub.add_parser("retry", help="run failed tasks again (all, or the ones named)")
    campaign_arguments(retry)
    retry.add_argument("tasks", nargs="*", help="task ids such as r0003_z1.100 (default: all)")
    retry.add_argument("--no-monitoring", action="store_true", help="no Parsl monitoring database")
    retry.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    retry.set_defaults(func=run_retry)
    rehearse.add_parser(sub)
    release_verbs.add_parsers(sub)
    return parser


def error_message(exc: Exception) -> str:
    """What ``covmocks: error:`` says: one line; a ConfigError's problems one line each."""
    if isinstance(exc, ConfigError) and len(exc.problems) > 1:
        lines = "\n".join(f"  {escape_breaks(p)}" for p in exc.problems)
        return f"{len(exc.problems)} problems:\n{lines}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return escape_breaks(f"{exc.filename}: {exc.strerror or exc}")
    return escape_breaks(str(exc))


def run(func, args) -> int:
    """Run a verb; bad input (and a path the system refuses) becomes one line on stderr and
    exit status 2."""
    from covmocks.core.logs import setup_console

    setup_console(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    try:
        return func(args)
    except (CovmocksError, OSError) as exc:
        print(f"covmocks: error: {error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("covmocks: interrupted", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
