"""The galaxy models covmocks knows, by name: each one's version and parameters, readable
without importing JAX, and the class that implements it, imported only when a model is made.

A campaign file is checked against this table (model name, parameter names, the version it
records) by the campaign loader, which must stay light; ``get_model`` builds the model on a
worker. A new model version plugs in as a new entry.
"""

from __future__ import annotations

import dataclasses
import importlib

from covmocks.core.errors import InputError
from covmocks.galaxies import params


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model: ``name`` and ``version`` (recorded in every catalog), the
    constructor's ``parameters``, ``recorded``, those of them that change a catalog (the
    rest only how the work is cut), and ``target``, the implementing class as
    ``module:Class``."""

    name: str
    version: str
    parameters: tuple[str, ...]
    recorded: tuple[str, ...]
    target: str

    def load(self) -> type:
        """The implementing class (imports its module: JAX and the diffsky stack)."""
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


MODELS: dict[str, ModelEntry] = {
    "diffsky_sfh": ModelEntry(
        name="diffsky_sfh",
        version="1.3",
        parameters=tuple(params.DEFAULTS),
        recorded=params.RECORDED,
        target="covmocks.galaxies.diffsky:DiffskySFH",
    ),
}


def get_model(name: str, parameters: dict | None = None):
    """Instantiate a registered model by name with its parameters (``InputError``, naming the
    key, for an unknown parameter or a bad value)."""
    if name not in MODELS:
        raise InputError(f"unknown galaxy model {name!r}; known: {', '.join(sorted(MODELS))}")
    if parameters is not None and not isinstance(parameters, dict):
        raise InputError(f"model parameters must be a mapping of names to values: {parameters!r}")
    entry = MODELS[name]
    unknown = sorted(set(parameters or {}) - set(entry.parameters), key=str)
    if unknown:
        raise InputError(f"unknown model parameter(s) {', '.join(map(repr, unknown))} of "
                         f"{name!r}; known: {', '.join(entry.parameters)}")  # fmt: skip
    return entry.load()(**(parameters or {}))
