"""Sphinx extension and checks: the format page's tables (``docs/schema.md``) against the
files the package's writers write, both ways.

Each file type has one table on the page, the table that follows its marker line
``<!-- schema: KIND -->``. Its first column names rows in backquotes, several per row
allowed:

- a dataset by its path (``pos``, ``<sample>/k_mid``), a group by its path and ``/``;
- an attribute by its owner's path and ``@`` (``@box_size`` on the root,
  ``<sample>/@n_objects``, ``*/@units``: on every dataset; ``*`` is one part of a path);
- a key of a JSON file by its path (``stages/validate_s``);
- ``{a,b}`` stands for both spellings (``z<label>/{<sample>,_joint}/tasks``).

Groups named by the data (a snapshot ``z0.500``, a sample) are named ``z<label>`` and
``<sample>``. The second column (type, shape) says ``JSON`` for an attribute written as JSON
text, which the writers list in the owner's ``json_attributes``
(``covmocks.catalog.attrs.write_attrs``).

``schema_problems`` returns what differs: a name the file holds and no row names, a row the
file does not hold, an attribute marked JSON that the table does not say is JSON (or, with
``json_both_ways``, the reverse), and JSON that is not strict (NaN, Infinity).

Directive ``covmocks-file-layout`` (argument ``catalog``, ``statistics``, ``samples``,
``clustering`` or ``covariance``): writes that file from stand-in inputs through the
package's own writers (no model run) and warns (an error under ``-W``) for every problem.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from covmocks_reference import _inline
from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

log = logging.getLogger(__name__)
SCHEMA_PAGE = Path(__file__).resolve().parents[1] / "schema.md"
MARK = re.compile(r"^<!-- schema: ([\w-]+) -->$")

# ---------------------------------------------------------------- the page's tables


def _expand(name: str) -> list[str]:
    """``a{b,c}d`` -> ``abd``, ``acd`` (innermost first)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", name)
    if not m:
        return [name]
    return [x for alt in m.group(1).split(",")
            for x in _expand(name[: m.start()] + alt + name[m.end():])]  # fmt: skip


def _regex(pattern: str) -> re.Pattern:
    return re.compile("[^/@]+".join(re.escape(p) for p in pattern.split("*")) + "$")


def page_tables(text: str) -> dict[str, dict[str, bool]]:
    """kind -> {row name: typed JSON} of each marked table of the page (names expanded)."""
    tables: dict[str, dict[str, bool]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MARK.match(line.strip())
        if not m:
            continue
        rows = tables.setdefault(m.group(1), {})
        for row in lines[i + 3 :]:  # the header and its rule first
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
            for name in re.findall(r"`([^`]+)`", cells[0]):
                for each in _expand(name):
                    rows[each] = "JSON" in cells[1]
    return tables


# ---------------------------------------------------------------- what a file holds


def _strict(text: str) -> None:
    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    json.loads(text, parse_constant=reject)


def hdf5_names(path: Path, rename: dict[str, str]) -> tuple[dict[str, bool], list[str]]:
    """({name: marked JSON} of every group, dataset and attribute of an HDF5 file, problems
    of its JSON attributes). Group names in ``rename`` are shown renamed."""
    import h5py

    names: dict[str, bool] = {}
    problems: list[str] = []

    def attributes(prefix: str, obj) -> None:
        marked = (
            set(json.loads(obj.attrs["json_attributes"]))
            if "json_attributes" in obj.attrs
            else set()
        )
        for key in sorted(marked - set(obj.attrs)):
            problems.append(f"`{prefix}@{key}` is listed in json_attributes but not written")
        for key, value in obj.attrs.items():
            name = f"{prefix}@{key}"
            names[name] = names.get(name, False) or key in marked or key == "json_attributes"
            if key in marked or key == "json_attributes":
                try:
                    _strict(value.decode() if isinstance(value, bytes) else value)
                except (ValueError, TypeError) as err:
                    problems.append(f"`{name}`: {err}")

    with h5py.File(path, "r") as f:
        attributes("", f)

        def visit(name, obj):
            shown = "/".join(rename.get(p, p) for p in name.split("/"))
            if isinstance(obj, h5py.Group):
                shown += "/"
            names.setdefault(shown, False)
            attributes(shown if shown.endswith("/") else shown + "/", obj)

        f.visititems(visit)
    return names, problems


def json_names(
    text: str, mappings: frozenset[str] = frozenset()
) -> tuple[dict[str, bool], list[str]]:
    """({key path: False} of a JSON document's objects, descending into every object but those
    at ``mappings`` (keyed by data: a check, a package), problems: it is not strict JSON)."""
    try:
        _strict(text)
    except ValueError as err:
        return {}, [str(err)]
    names: dict[str, bool] = {}

    def walk(prefix: str, obj: dict) -> None:
        for key, value in obj.items():
            names[prefix + key] = False
            if isinstance(value, dict) and prefix + key not in mappings:
                walk(prefix + key + "/", value)

    walk("", json.loads(text))
    return names, []


def schema_problems(kind: str, written: dict[str, bool], text: str | None = None,
                    json_both_ways: bool = True) -> list[str]:  # fmt: skip
    """What differs between the ``kind`` table of the page and ``written`` (``hdf5_names``,
    ``json_names``): written names no row names, rows nothing written matches, and JSON
    attributes the table does not type JSON (``json_both_ways``: and the reverse)."""
    table = page_tables(text if text is not None else SCHEMA_PAGE.read_text()).get(kind)
    if not table:
        return [f"{kind}: no table marked `<!-- schema: {kind} -->` on the page"]
    patterns = {row: _regex(row) for row in table}
    problems = []
    for name, marked in sorted(written.items()):
        rows = [row for row, rx in patterns.items() if rx.match(name)]
        if not rows:
            problems.append(f"{kind}: `{name}` is written but is not a row of its table")
        elif marked and not any(table[r] for r in rows):
            problems.append(f"{kind}: `{name}` is JSON (json_attributes) but its row says "
                            "no JSON")  # fmt: skip
        elif json_both_ways and "@" in name and not marked and any(table[r] for r in rows):
            problems.append(f"{kind}: `{name}` is typed JSON on the page but is not marked "
                            "JSON in the file")  # fmt: skip
    for row, rx in patterns.items():
        if not any(rx.match(name) for name in written):
            problems.append(f"{kind}: the row `{row}` is not written")
    return problems


def _stand_in_catalog(tmp: Path) -> tuple[Path, dict]:
    """An empty catalog laid out by ``covmocks.catalog.hdf5`` with every attribute the generator
    writes: ``generator.catalog_attrs`` (its keys, read from its source), ``totals``, the
    completeness attributes and ``halo_cleaning`` that ``generate_box`` adds, and the writer's
    ``n_galaxies``."""
    import h5py

    from covmocks.box import populate
    from covmocks.catalog import hdf5 as catalog

    tree = ast.parse(inspect.getsource(populate.catalog_attrs))
    (ret,) = [n for n in ast.walk(tree) if isinstance(n, ast.Return)]
    keys = [k.value for k in ret.value.keys]
    attrs = dict.fromkeys(keys, 0)
    attrs |= populate.totals([{"n_hosts": 0, "n_satellites": 0}])
    attrs |= dict.fromkeys(populate.COMPLETENESS_ATTRS, 0)
    attrs |= {"halo_cleaning": {"applied": False}, "n_galaxies": 0}  # JSON, as written
    path = tmp / "catalog.hdf5"
    with h5py.File(path, "w") as f:
        catalog.create_datasets(f, 0, catalog.compression_args("gzip"))
        catalog.write_attrs(f, attrs)
    return path, {0: "n"}


def _stand_in_box_files(tmp: Path):
    """The statistics and samples files of an empty box, through ``generator.write_statistics``
    (the generator's own path) with a stand-in spec."""
    from covmocks.box import populate
    from covmocks.catalog.summary import BoxStatistics
    from covmocks.clustering.samples import SampleCollector

    stats = BoxStatistics()
    summary = stats.summary(box_size=100.0, h=0.7, log10_mhost_min_msun=11.0,
                            log10_msub_min_msun=10.5, probe_fraction=1.0)  # fmt: skip
    attrs = dict.fromkeys(populate.IDENTITY, 0)
    spec = SimpleNamespace(statistics=tmp / "box.stats.hdf5", samples=tmp / "box.samples.hdf5",
                           output=tmp / "box.hdf5", task_id="r0000_z0.500")  # fmt: skip
    populate.write_statistics(spec, stats, summary, attrs, SampleCollector((), 100.0))
    return spec.statistics, spec.samples


NK, N_BOXES = 7, 4  # stand-in sizes, shown as symbols


def _stand_in_records(tmp: Path):
    """Clustering records written by ``covmocks.clustering.power.write_record`` with the root
    attributes ``covmocks.clustering.measure`` gives them, then the covariance of four such boxes
    through ``covmocks.covariance.ensemble`` (``read_box``, ``assemble``, ``write``)."""
    from covmocks.clustering import measure, power
    from covmocks.covariance import ensemble

    cut = SimpleNamespace(select="sfr", threshold=0.5, origin="number_density",
                          number_density=1e-3, name="<sample>")  # fmt: skip
    boxes = []
    for r in range(N_BOXES):
        sample = {key: np.ones((3, NK)) for key in power.ARRAYS if key.startswith("redshift")}
        sample |= {"k_mid": np.ones(NK), "k_avg": np.ones(NK), "n_modes": np.ones(NK, int),
                   "real": np.ones((3, NK)) + r, "n_objects": 10, "number_density": 1e-3,
                   "shot_noise": 1e3, "selection": measure._selection(cut, {})}  # fmt: skip
        sample["redshift"] = sample["redshift"] + r
        attrs = dict.fromkeys(measure.IDENTITY, 0) | {"model_name": "m", "model_version": "1"}
        attrs |= {"samples_file": "x", "estimator": {"nmesh": 32, "dk_fundamentals": 1}}
        path = tmp / f"r{r}.pk.hdf5"
        power.write_record(path, {"sample": sample, "sample_b": sample}, attrs)
        task = SimpleNamespace(task_id=f"r{r:04d}_z0.500", realization=r, redshift=0.5)
        boxes.append((task, ensemble.read_box(path)))
    cov = tmp / "covariance.hdf5"
    ensemble.write(cov, ensemble.assemble(boxes))
    return tmp / "r0.pk.hdf5", cov


LAYOUTS = {  # kind -> the writer that lays the file out
    "catalog": "covmocks.catalog.hdf5.create_datasets, covmocks.box.populate.catalog_attrs",
    "statistics": (
        "covmocks.box.populate.write_statistics, covmocks.catalog.summary.BoxStatistics.write"
    ),
    "samples": (
        "covmocks.box.populate.write_statistics, covmocks.clustering.samples.SampleCollector.write"
    ),
    "clustering": "covmocks.clustering.power.write_record",
    "covariance": "covmocks.covariance.ensemble.assemble, covmocks.covariance.ensemble.write",
}


def stand_in_files(tmp: Path) -> dict[str, tuple[Path, dict, dict]]:
    """kind -> (file, size symbols, group renames): every layout, written by the package."""
    catalog, symbols = _stand_in_catalog(tmp)
    stats, samples = _stand_in_box_files(tmp)
    record, cov = _stand_in_records(tmp)
    p = 3 * NK
    return {
        "catalog": (catalog, symbols, {}),
        "statistics": (stats, {}, {}),
        "samples": (samples, {0: "n"}, {}),
        "clustering": (record, {NK: "nk"}, {"sample": "<sample>", "sample_b": "<sample>"}),
        "covariance": (
            cov,
            {NK: "nk", p: "p", N_BOXES: "N"},
            {"z0.500": "z<label>", "sample": "<sample>", "sample_b": "<sample>"},
        ),
    }


class FileLayout(SphinxDirective):
    """The file of one table of the page, written by the package's own writer from stand-in
    inputs and checked against the table (every problem a warning)."""

    required_arguments = 1

    def run(self):
        kind = self.arguments[0]
        with tempfile.TemporaryDirectory() as tmp:
            path, symbols, rename = stand_in_files(Path(tmp))[kind]
            written, problems = hdf5_names(path, rename)
        text = Path(self.env.doc2path(self.env.docname)).read_text()
        # stand-in attribute values are placeholders: JSON is judged one way here, both ways
        # on a campaign's real files (tests/test_docs.py)
        problems += schema_problems(kind, written, text, json_both_ways=False)
        for problem in problems:
            log.warning(f"{problem} (writer: {LAYOUTS[kind]})",
                        location=(self.env.docname, self.lineno),
                        type="covmocks", subtype="layout")  # fmt: skip
        sizes = ", ".join(f"`{s}`" for s in dict.fromkeys(symbols.values())) or "none"
        return [nodes.paragraph("", "", *_inline(
            f"Written by `{LAYOUTS[kind]}`; the table below is checked against what it "
            f"writes, both ways, when this page is built. Sizes: {sizes}."))]  # fmt: skip


def setup(app):
    app.add_directive("covmocks-file-layout", FileLayout)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
