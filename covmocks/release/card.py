"""A release's data card (``README.md``) and data model (``datamodel.md``), generated from the
campaign, the catalog schema and the released files themselves.

The data model walks one released file of each type with ``covmocks.catalog.structure`` (the
walk the docs' format page makes over files the writers laid out): every dataset, group and
attribute a file of that type holds is named.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from covmocks.catalog.hdf5 import SCHEMA
from covmocks.catalog.structure import layout_rows
from covmocks.core.layout import Layout, ReleaseLayout, redshift_label

TASK_PART = re.compile(r"r\d{4,}")
REDSHIFT_PART = re.compile(r"\d+\.\d{3}")

CITE = (
    "- AbacusSummit: Maksimova et al. 2021, MNRAS 508, 4017; Garrison et al. 2021, MNRAS "
    "508, 575 (the halo catalogs, where the source is `abacus`)",
    "- diffmah: Hearin et al. 2021, MNRAS 505, 5916; diffstar: Alarcon et al. 2023, MNRAS "
    "518, 562; dsps: Hearin et al. 2023, MNRAS 521, 1741 (the galaxy model)",
)


def pattern(name: str) -> str:
    """A file's name pattern: realization ``rNNNN``, redshift ``Z.ZZZ``."""
    return REDSHIFT_PART.sub("Z.ZZZ", TASK_PART.sub("rNNNN", name))


def file_types(root: Path) -> dict[str, str]:
    """What each payload file type is, keyed by its pattern, from ``Layout``'s paths."""
    layout, task = Layout(root), "r0000_z0.000"

    def rel(p: Path) -> str:
        return pattern(p.relative_to(root).as_posix())

    return {
        rel(layout.catalog(0, 0.0)): "galaxy catalog of one box (columns: the data card)",
        rel(layout.qa_record(task)): "QA record: the checks passed, summary, sha256 of the catalog",
        rel(layout.statistics(task)): "the box's science statistics (mass functions, counts)",
        rel(layout.samples(task)): "the galaxies the clustering samples are cut from",
        rel(layout.clustering(task)): "the box's clustering: power-spectrum multipoles per sample",
        rel(layout.report): "the campaign report (open in a browser)",
    }


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _median(values) -> str:
    values = [v for v in values if isinstance(v, int | float)]
    return f"{float(np.median(values)):.4g}" if values else "n/a"


def card(campaign, release: ReleaseLayout, rows: list[dict], info: dict) -> str:
    """The data card: what the catalogs are, columns and units, completeness per snapshot,
    samples and thresholds, the covariance, what is missing, how to cite and to verify."""
    sci = campaign.science_record
    done = [r for r in rows if r["state"] == "done"]
    missing = [r for r in rows if r["state"] != "done"]
    lines = [f"# {campaign.name} version {campaign.version}: mock galaxy catalogs", ""]
    if missing:
        lines += [f"**Partial release: {len(missing)} of {len(rows)} boxes are missing** (listed "
                  "under 'What is missing').", ""]  # fmt: skip
    lines += [campaign.description, "",
              f"Released {info['released_utc']} by covmocks {info['covmocks']} (commit "
              f"{info['git_commit']}); {len(done)} boxes, {info['payload_files']} files, "
              f"{info['payload_bytes'] / 1e9:.3f} GB.", "",
              "## What the catalogs are", "",
              f"One HDF5 galaxy catalog per box: {len(campaign.science.realizations)} "
              f"realizations x {len(campaign.science.redshifts)} snapshots, halos from "
              f"`{sci['science.source']}`" + (f" (`{campaign.science.input}`)" if
                                               campaign.science.input else "") + ", populated "
              f"by the model `{sci['science.model']}` {sci['science.model_version']} with "
              f"parameters `{json.dumps(sci['science.model_params'])}`, host mass cut log10 "
              f"M > {sci['science.log10_mhost_min_msun']} (Msun), campaign seed "
              f"{sci['campaign.seed']}. Each box's random stream is fixed by the seed, its "
              "realization and snapshot: a box regenerated gives the same bytes on the same "
              "platform. `boxes.csv` lists every box; `datamodel.md` every file type.", "",
              "## Columns and units", "",
              "Masses and star formation without h (Msun, Msun/yr); positions comoving Mpc/h "
              "in [0, box_size) in the simulation's frame.", ""]  # fmt: skip
    lines += _table(["column", "dtype", "shape per row", "units", "meaning"],
                    [[f"`{n}`", d, s or "scalar", u, m]
                     for n, (d, s, u, m) in SCHEMA.items()])  # fmt: skip
    lines += ["", "## Completeness limits per snapshot", "",
              "Medians over the snapshot's boxes of the catalog attributes (log10 Msun, log10 "
              "Msun/yr): below these the sample is incomplete.", ""]  # fmt: skip
    by_z: dict[str, list[dict]] = {}
    for r in done:
        by_z.setdefault(r["snapshot_label"], []).append(r)
    lines += _table(["redshift", "header redshift", "boxes", "galaxies per box",
                     "log10 M* complete", "log10 SFR complete"],
                    [[z, _median(r["header_redshift"] for r in rs), len(rs),
                      _median(r["galaxies"] for r in rs),
                      _median(r["log10_mstar_complete"] for r in rs),
                      _median(r["log10_sfr_complete"] for r in rs)]
                     for z, rs in sorted(by_z.items())])  # fmt: skip
    definition = next((r["completeness_definition"] for r in done
                       if r.get("completeness_definition")), None)  # fmt: skip
    if definition:
        lines += ["", f"Definition: {definition}"]
    lines += ["", *_samples(campaign, release)]
    lines += ["", "## What is missing", ""]
    gone = [f"- `{r['task']}`: {r['state']}: {r['why']}" for r in missing]
    lines += gone or ["Nothing: every planned box is here."]
    lines += ["", "## How to cite", "",
              f"Cite this release as: {campaign.name} version {campaign.version}, made with "
              f"covmocks {info['covmocks']}; the manifest's sha256 ({info['manifest_sha256']}) "
              "identifies its content. And:", "", *CITE, "",
              "## How to verify", "",
              "Every file's size and SHA-256 are in `payload-sizes.txt` and "
              "`manifest-sha256.txt` (BagIt, paths from the campaign directory). On any copy "
              "(one restored from tape too), with covmocks installed, from the campaign "
              "directory:", "", "```bash", f"covmocks verify {info['from_campaign']}",
              "```", "", "or with coreutils only (checksums, not missing or extra files):", "",
              "```bash", f"sha256sum --quiet -c {info['from_campaign']}/manifest-sha256.txt",
              "```"]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def _samples(campaign, release: ReleaseLayout) -> list[str]:
    lines = ["## Samples, thresholds and the covariance", ""]
    if campaign.clustering is None:
        return lines + ["No clustering measured: no samples, no covariance."]
    fixed = _json(release.root / "thresholds.json")
    rows = []
    for s in campaign.clustering.samples:
        per_z = "; ".join(f"z={z}: {e[s.name].get('threshold'):.4f}"
                          for z, e in sorted(fixed.items()) if s.name in e)  # fmt: skip
        rows.append([f"`{s.name}`", s.select, s.threshold if s.threshold is not None else "",
                     s.number_density or "", per_z])  # fmt: skip
    lines += _table(["sample", "select", "threshold", "number density (h/Mpc)^3",
                     "thresholds fixed per snapshot"], rows)  # fmt: skip
    lines += ["", "`covariance.hdf5`: per snapshot and sample, the mean and covariance (ddof 1) "
              "over the boxes of the power-spectrum multipoles [P0, P2, P4](k) in (Mpc/h)^3, "
              "k in h/Mpc, shot noise not subtracted; `real` (line of sight z), `redshift` "
              "(one line of sight: the mean over the three axes' measurements), "
              "`redshift_mean3`, and the Gaussian reference. Rescaling to a survey of volume "
              "V_survey: C_survey ~ C_box V_box / V_survey (V_box the snapshot group's "
              "`volume` attribute), which ignores the survey window and the super-sample "
              "covariance."]  # fmt: skip
    return lines


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def datamodel(campaign, root: Path, payload: list[str],
              tag_files: dict[str, str]) -> str:  # fmt: skip
    """The data model: each file type's name pattern and what it is; for HDF5 files every
    group, dataset and attribute, for JSON records every key, for the index every column.
    ``tag_files`` says what each of the release directory's files is."""
    types = file_types(root)
    examples: dict[str, list[str]] = {}
    for name in payload:
        examples.setdefault(pattern(name), []).append(name)
    samples = [s.name for s in campaign.clustering.samples] if campaign.clustering else []
    zs = campaign.science.redshifts
    rename = {f"z{redshift_label(z)}": "z<label>" for z in zs} | dict.fromkeys(samples, "<sample>")
    lines = [f"# Data model: {campaign.name} version {campaign.version}", "",
             "Generated by `covmocks release` from this release's files. Paths of the payload "
             "are from the campaign directory; `rNNNN` is a realization, `Z.ZZZ` a redshift.",
             "", "## File types", ""]  # fmt: skip
    lines += _table(["pattern", "files", "what"],
                    [[f"`{p}`", len(ex), types.get(p, "a file of the campaign directory")]
                     for p, ex in sorted(examples.items())]
                    + [[f"`{n}`", 1, what] for n, what in sorted(tag_files.items())])  # fmt: skip
    for p, ex in sorted(examples.items()):
        lines += ["", f"## `{p}`", "", types.get(p, "a file of the campaign directory"), ""]
        path = root / ex[0]
        if path.suffix == ".hdf5":
            lines += [f"As in `{ex[0]}` (its shapes):", ""]
            rows, _ = layout_rows(path, {}, rename)
            lines += _table(["object", "dtype", "shape", "attributes"], rows)
        elif path.suffix == ".json":
            keys = _json(path)
            lines += [f"JSON object, keys: {', '.join(f'`{k}`' for k in keys)}"]
    lines += ["", "## `boxes.csv`", "", "One row per planned box, columns: "
              + ", ".join(f"`{c}`" for c in BOX_COLUMNS) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


BOX_COLUMNS = ("task", "realization", "snapshot", "redshift", "header_redshift", "galaxies",
               "file", "bytes", "sha256", "state", "why")  # fmt: skip
