"""Parameters of the diffsky model: names, defaults, and the checks that reject bad values.

Every parameter of ``covmocks.galaxies.diffsky.DiffskySFH`` is resolved here, so an unknown name or
a bad value (``--model-params '{"n_t_table": -3}'``) is one ``InputError`` that names the key,
raised before anything is computed.

Which parameters change the science (and are recorded in the catalog's ``model_params``):
``log10_msub_min_msun``, ``n_t_table``, ``precision``, ``diffmahpop``, ``diffstarpop``.
``batch_min`` and ``batch_max`` change only how objects are batched: the catalog is
bit-identical whatever they are, so they are not recorded.
"""

from __future__ import annotations

import math
import numbers

from covmocks.core.errors import InputError

# Time steps of the star-formation-history table, T_TABLE_MIN..t_obs (linear). bench/accuracy.py
# measured 16..200 steps against a 400-step float64 reference: 36 is the fewest whose 99.9th
# percentile of |d log10 M*| stays within 0.01 dex / 2 at z = 0, 1 and 3 (0.0038 dex at z = 0;
# see DiffskySFH's docstring).
N_T_TABLE = 36
N_T_TABLE_RANGE = (8, 4000)
# Arithmetic of the star-formation-history evaluation and integration (the random draws are
# float64 in both modes, so both modes draw the same galaxies).
PRECISIONS = ("float32", "float64")
PRECISION = "float32"

DEFAULTS = {
    "log10_msub_min_msun": 10.5,
    "n_t_table": N_T_TABLE,
    "precision": PRECISION,
    "diffmahpop": None,
    "diffstarpop": None,
    "batch_min": 1024,
    "batch_max": 65536,
}
# What the catalog records (the rest does not change a single bit of it).
RECORDED = ("log10_msub_min_msun", "n_t_table", "precision", "diffmahpop", "diffstarpop")
# What each parameter means (the guide's table of model parameters is made from these).
MEANINGS = {
    "log10_msub_min_msun": "subhalo (satellite) Mpeak cut, log10(Msun) without h",
    "n_t_table": f"time steps of the star-formation-history table, {N_T_TABLE_RANGE[0]} to "
    f"{N_T_TABLE_RANGE[1]} (the default keeps the 99.9th percentile of the error of log10 M* "
    "within 0.005 dex, `bench/accuracy.py`)",
    "precision": f"arithmetic of the history evaluation: {' or '.join(PRECISIONS)} (the "
    "random draws are float64 in both)",
    "diffmahpop": "overrides of DiffmahPop's population parameters, by name",
    "diffstarpop": "overrides of DiffstarPop's population parameters, by name",
    "batch_min": "fewest objects per kernel call (smaller batches are padded to it)",
    "batch_max": "most objects per kernel call",
}


def _fail(key: str, message: str):
    raise InputError(f"model parameter {key!r}: {message}")


def _real(key, value, low=-math.inf, high=math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(key, f"expected a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        _fail(key, f"expected a finite number in [{low}, {high}], got {value!r}")
    return value


def _integer(key, value, low, high) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if not (isinstance(value, float) and value.is_integer()):
            _fail(key, f"expected an integer, got {value!r}")
    value = int(value)
    if not low <= value <= high:
        _fail(key, f"expected an integer in [{low}, {high}], got {value}")
    return value


def _overrides(key, value, defaults) -> dict:
    """Population parameter overrides by name: a mapping of known names to finite numbers."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(key, f"expected a mapping of parameter names to numbers, got {value!r}")
    unknown = sorted(set(value) - set(defaults), key=str)
    if unknown:
        raise InputError(f"unknown {key} parameter(s): {', '.join(map(str, unknown))}")
    return {name: _real(f"{key}.{name}", v) for name, v in value.items()}


def population_defaults() -> dict[str, dict[str, float]]:
    """{"diffmahpop": {name: value}, "diffstarpop": {name: value}}: the population
    parameters' defaults (Python floats) in the namedtuples' field order (``DiffmahPop_Params``,
    ``DiffstarPopParams``), remembered (``core.remembered``: no import of diffmah or diffstar
    where they are stored)."""
    from covmocks.core.remembered import remembered

    stored = remembered("diffstarpop/population_defaults", _population_defaults)
    names = {"diffmahpop": stored["diffmahpop_names"], "diffstarpop": stored["diffstarpop_names"]}
    return {pop: dict(zip(map(str, names[pop]), map(float, stored[pop]), strict=True))
            for pop in names}  # fmt: skip


def _population_defaults() -> dict:
    from diffmah.diffmahpop_kernels.bimod_censat_params import DEFAULT_DIFFMAHPOP_PARAMS
    from diffstar.diffstarpop import DEFAULT_DIFFSTARPOP_PARAMS

    pops = {"diffmahpop": DEFAULT_DIFFMAHPOP_PARAMS, "diffstarpop": DEFAULT_DIFFSTARPOP_PARAMS}
    return {**{pop: [float(v) for v in t] for pop, t in pops.items()},
            **{f"{pop}_names": list(t._fields) for pop, t in pops.items()}}  # fmt: skip


def resolve(params: dict | None, mahpop_defaults, sfhpop_defaults) -> dict:
    """``params`` checked and completed with ``DEFAULTS``; population overrides checked
    against the population parameters' names (``mahpop_defaults`` and ``sfhpop_defaults``:
    mappings by name, ``population_defaults``). Raises ``InputError`` naming the key."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS), key=str)
    if unknown:
        raise InputError(
            f"unknown model parameter(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(DEFAULTS)}"
        )
    p = DEFAULTS | params
    out = {
        "log10_msub_min_msun": _real("log10_msub_min_msun", p["log10_msub_min_msun"], 6.0, 16.0),
        "n_t_table": _integer("n_t_table", p["n_t_table"], *N_T_TABLE_RANGE),
        "precision": p["precision"],
        "diffmahpop": _overrides("diffmahpop", p["diffmahpop"], mahpop_defaults),
        "diffstarpop": _overrides("diffstarpop", p["diffstarpop"], sfhpop_defaults),
    }
    out["batch_min"], out["batch_max"] = batch_sizes(p)
    if out["precision"] not in PRECISIONS:
        _fail("precision", f"expected one of {', '.join(PRECISIONS)}, got {p['precision']!r}")
    return out


def batch_sizes(params: dict | None) -> tuple[int, int]:
    """(batch_min, batch_max) of model parameters ``params``, completed with ``DEFAULTS`` and
    checked (``resolve``'s checks of them: InputError naming the key)."""
    p = DEFAULTS | dict(params or {})
    low = _integer("batch_min", p["batch_min"], 1, 2**24)
    high = _integer("batch_max", p["batch_max"], 1, 2**24)
    if low > high:
        raise InputError(
            f"model parameters 'batch_min' and 'batch_max': batch sizes must satisfy "
            f"batch_min <= batch_max, got {low} > {high}"
        )
    return low, high
