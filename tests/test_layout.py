"""The package's layout: subpackages by layer, imports that only point down.

``LAYERS`` is the architecture as a table: a module may import its own subpackage and any
subpackage of a lower layer, never one beside or above it. Function-level imports count too
(they are still dependencies). The table is also drawn in docs/architecture.md.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "covmocks"
CAMPAIGNS = sorted((PACKAGE.parent / "campaigns").glob("*.yaml"))

# Lowest first; subpackages on one line are independent of each other.
LAYERS = (
    ("core",),  # errors, units, limits, the campaign directory's layout, provenance
    ("halos", "catalog"),  # halo sources; catalog files, validation, summary statistics
    ("galaxies", "clustering"),  # the model and its registry; samples, k bins, P_ell
    ("campaign",),  # the campaign file, checked against what the layers below offer
    ("box",),  # one box: spec, populate-and-write loop, MPI box
    ("apps",),  # the Parsl apps that run on workers
    ("workflow",),  # plan, metadata, driver, state, Parsl configuration, notebook
    ("covariance",),  # the ensemble of a campaign's clustering records
    ("report",),  # the campaign report
    ("release",),  # a released version: verification, manifest, data card, plan to tape
    ("cli",),  # the command line
)
ENTRY_POINTS = {"__init__", "run", "generate"}  # covmocks/<name>.py: the package's face
RANK = {pkg: rank for rank, tier in enumerate(LAYERS) for pkg in tier}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.relative_to(PACKAGE).parts


def _imports(path: Path):
    """The covmocks modules ``path`` imports, as dotted names below ``covmocks``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] or [node.module]
        else:
            continue
        for name in names:
            if name.startswith("covmocks."):
                yield name.split(".", 2)[1]


def test_every_module_lives_in_a_layer():
    for path, parts in _modules():
        if len(parts) == 1:
            assert path.stem in ENTRY_POINTS, f"{path}: top-level module outside any layer"
        else:
            assert parts[0] in RANK or parts[0] == "configs", f"{path}: not in LAYERS"


def test_imports_point_down():
    wrong = []
    for path, parts in _modules():
        if len(parts) == 1:
            continue  # entry points may import anything
        own = parts[0]
        for target in _imports(path):
            if target in ENTRY_POINTS or target == own:
                continue
            if target not in RANK or RANK[target] >= RANK.get(own, -1):
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports covmocks.{target}")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_the_table_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a core module importing the workflow is refused."""
    fake = tmp_path / "covmocks"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "x.py").write_text("def f():\n    from covmocks.workflow import plan\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="core/x.py imports covmocks.workflow"):
        test_imports_point_down()


def test_no_module_over_400_lines():
    long = [f"{p}: {n}" for p, _ in _modules() if (n := len(p.read_text().splitlines())) > 400]
    assert not long


def test_loading_every_shipped_campaign_stays_light():
    """The login node's first step (load, validate, report errors with file:line) imports
    neither h5py, JAX, Parsl nor numpy; nor the driver, the planner or the model."""
    code = (
        "import sys\nfrom covmocks.campaign import Campaign\n"
        f"for path in {[str(p) for p in CAMPAIGNS]!r}:\n    Campaign.load(path)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    heavy = {"h5py", "jax", "parsl", "numpy", "abacusnbody", "mpi4py", "matplotlib"}
    ours = {name for name in loaded if name.startswith("covmocks.")}
    assert not loaded & heavy
    assert {name.split(".")[1] for name in ours} <= {"campaign", "core", "galaxies"}
    assert "covmocks.galaxies.diffsky" not in ours and len(CAMPAIGNS) >= 3


def test_a_campaign_is_data_not_a_driver():
    """Planning and running ask the workflow layer; the campaign model only describes."""
    from covmocks.campaign import Campaign

    assert not [name for name in ("plan", "run", "status") if hasattr(Campaign, name)]
