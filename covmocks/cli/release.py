"""``covmocks release`` and ``covmocks verify``: sign a campaign version, check a copy of it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from covmocks.cli.arguments import GB, campaign_arguments, gigabytes, positive


def run_release(args: argparse.Namespace) -> int:
    from covmocks.campaign import Campaign
    from covmocks.release.build import HtarSettings, htar_dry_run, release

    campaign = Campaign.load(args.campaign)
    settings = None
    if args.htar_plan or args.dry_run:
        settings = HtarSettings(args.bundle_min_gb, args.bundle_max_gb, args.hpss_dir or "")
    if args.dry_run:
        for line in htar_dry_run(campaign, settings):
            print(line)
        return 0
    t0 = time.perf_counter()
    out = release(
        campaign, args.to, args.allow_incomplete, settings, args.workers, progress=not args.quiet
    )
    print(
        f"released {campaign.name} version {campaign.version} in "
        f"{time.perf_counter() - t0:.1f} s: {out.root}"
    )
    print(f"data card {out.card}\nverify    covmocks verify {out.root}")
    if settings is not None:
        print(f"to tape   {out.htar / 'htar.sh'} (--dry-run prints the bundles)")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from covmocks.release.bag import verify

    t0 = time.perf_counter()
    lines, n_files, n_bytes = verify(
        args.release, args.payload, args.workers, progress=not args.quiet
    )
    for line in lines:
        print(line)
    verdict = f"{len(lines)} problems" if lines else "all match"
    print(
        f"verified {n_files} files ({n_bytes / GB:.3f} GB) against {args.release} in "
        f"{time.perf_counter() - t0:.1f} s: {verdict}"
    )
    return 1 if lines else 0


def add_parsers(sub) -> None:
    """The ``release`` and ``verify`` subcommands."""
    from covmocks.release import htar

    rel = sub.add_parser(
        "release",
        help="verify every box, write a checksummed, documented "
        "release and make the version read-only",
    )
    campaign_arguments(rel)
    rel.add_argument(
        "--to",
        type=Path,
        metavar="DIR",
        help="write the release directory in DIR (default: <campaign dir>/release)",
    )
    rel.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="release although boxes are missing or failed (they are listed)",
    )
    rel.add_argument("--workers", type=positive, help="processes (default: the local cores)")
    rel.add_argument(
        "--htar-plan",
        action="store_true",
        help="also write the plan to HPSS tape: bundles and htar/htar.sh",
    )
    rel.add_argument(
        "--dry-run",
        action="store_true",
        help="print the htar bundles the release would plan; write nothing",
    )
    rel.add_argument(
        "--bundle-min-gb",
        type=gigabytes,
        default=htar.MIN_BYTES,
        metavar="GB",
        help=f"smallest htar bundle (default {htar.MIN_BYTES // GB})",
    )
    rel.add_argument(
        "--bundle-max-gb",
        type=gigabytes,
        default=htar.MAX_BYTES,
        metavar="GB",
        help=f"largest htar bundle (default {htar.MAX_BYTES // GB})",
    )
    rel.add_argument(
        "--hpss-dir",
        help="HPSS directory of the bundles (default "
        "covmocks/<name>_<version>; the script's $HPSS_DIR overrides)",
    )
    rel.set_defaults(func=run_release)
    ver = sub.add_parser(
        "verify",
        help="check a release's files against its manifest: "
        "missing, extra, changed; exit status 1 on any",
    )
    ver.add_argument("release", type=Path, help="release directory")
    ver.add_argument(
        "--payload",
        type=Path,
        metavar="DIR",
        help="the campaign directory (default: where release.json says)",
    )
    ver.add_argument("--workers", type=positive, help="threads (default: the local cores)")
    ver.add_argument("-v", "--verbose", action="count", default=0)
    ver.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ver.set_defaults(func=run_verify)
