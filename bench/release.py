"""Benchmark: ``covmocks release`` and ``covmocks verify`` on a finished demo campaign, and on
a synthetic campaign of many boxes made from it.

Usage: python bench/release.py DEMO_RUN_DIR [--realizations 100] [--workers N] [--out DIR]

DEMO_RUN_DIR is a finished demo campaign directory (``campaign-runs/demo_1``: 4 realizations
x 3 snapshots). It is copied (never changed), released and verified. Then a campaign of
``--realizations`` x 3 snapshots is made by copying realization 0's five files per snapshot
(catalog, QA record, statistics, samples, clustering) under every realization's names: the
bytes, and so the validation and the QA records' sha256, are those of real boxes. Prints a
Markdown table: boxes, files, bytes, release and verify wall-clock seconds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from covmocks.campaign import Campaign
from covmocks.core.layout import Layout
from covmocks.release.bag import verify
from covmocks.release.build import release

DEMO = Path(__file__).resolve().parents[1] / "campaigns" / "demo.yaml"


def campaign_file(where: Path, name: str, last: int, exclude: list[int]) -> Path:
    doc = yaml.safe_load(DEMO.read_text())
    doc["campaign"]["name"] = name
    doc["science"]["realizations"] = {"first": 0, "last": last, "exclude": exclude}
    doc["outputs"]["base"] = str(where / "runs")
    path = where / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def grow(demo: Layout, layout: Layout, n: int, redshifts: list[float]) -> None:
    """Realization 0's files of ``demo`` under the names of realizations 0..n-1."""
    for sub in layout.subdirs():
        sub.mkdir(parents=True, exist_ok=True)
    for r in range(n):
        for z in redshifts:
            src_task, task = f"r0000_z{z:.3f}", f"r{r:04d}_z{z:.3f}"
            dst = layout.catalog(r, z)
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(demo.catalog(0, z), dst)
            for kind in (Layout.qa_record, Layout.statistics, Layout.samples, Layout.clustering):
                shutil.copyfile(kind(demo, src_task), kind(layout, task))


def measure(path: Path, workers: int | None) -> list:
    campaign = Campaign.load(path)
    t0 = time.perf_counter()
    out = release(campaign, workers=workers, progress=False)
    t1 = time.perf_counter()
    problems, n_files, n_bytes = verify(out.root, workers=workers, progress=False)
    t2 = time.perf_counter()
    assert not problems, problems[:5]
    boxes = sum(1 for _ in campaign.layout.catalogs.rglob("*.hdf5"))
    return [campaign.name, boxes, n_files, f"{n_bytes / 1e6:.1f}", f"{t1 - t0:.1f}",
            f"{t2 - t1:.2f}"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished demo campaign directory")
    parser.add_argument("--realizations", type=int, default=100)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--out", type=Path, help="work here (default: a temporary directory)")
    args = parser.parse_args()
    where = Path(args.out or tempfile.mkdtemp(prefix="covmocks-release-bench-"))
    where.mkdir(parents=True, exist_ok=True)
    demo_yaml = campaign_file(where, "demo", 4, [2])
    shutil.copytree(args.demo, Campaign.load(demo_yaml).layout.root)
    big = Campaign.load(campaign_file(where, "many", args.realizations - 1, []))
    zs = big.science_record["science.redshifts"]
    grow(Layout(args.demo), big.layout, args.realizations, zs)
    rows = [measure(demo_yaml, args.workers), measure(big.path, args.workers)]
    print("| campaign | boxes | files | MB | release s | verify s |\n|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    print(f"(in {where}: remove with chmod -R u+w {where}; rm -r {where})")


if __name__ == "__main__":
    main()
