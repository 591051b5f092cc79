"""Sphinx configuration of the covmocks site (build: see docs/index.md, "Building this site")."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

project = "covmocks"
author = "the covmocks collaboration"
copyright = "the covmocks collaboration"

extensions = [
    "myst_nb",  # Markdown pages (MyST) and the notebook, rendered without executing it
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "covmocks_reference",  # the pages generated from the code (docs/_ext)
    "covmocks_schema",  # the format page's tables checked against the writers (docs/_ext)
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # [text](campaigns.md#clustering) links work as on GitHub
nb_execution_mode = "off"  # tests/test_notebook.py executes the notebook

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "none"  # signatures keep their annotations as written
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "alabaster"
html_title = "covmocks"
html_theme_options = {"description": "Mock galaxy catalogs for covariance campaigns"}
autodoc_inherit_docstrings = False  # a subclass of a Parsl class does not show Parsl's docstrings
