"""Checks of a generic HDF5 halo file (``halos.HDF5Source``, schema in docs/schema.md):
bad input is refused with one line naming the file, the dataset or attribute, and what is
wrong, before a box is made of it.

- header (``header_number``): each numeric attribute a finite real number (a scalar or an
  array of one), in the range the physics needs (``HEADER_RANGES``): a positive box, ``h``
  and ``Om0``, baryons no more than matter, a redshift in [0, ``MAX_REDSHIFT``];
- datasets (``dataset``): present, a dataset (not a group, nor a link that leads nowhere),
  of the schema's shape (n rows, all of one length) and of a number type (integers for
  ``id``; no text, complex, compound or boolean data);
- ids (``check_ids``): not negative, and distinct (every host gets its own random draws);
- values, block by block as they are read (``check_block``): finite positions and
  velocities slower than light, masses within ``MASS_RANGE`` and radii positive and at most
  ``MAX_RADIUS_R200M`` R200m of their mass (the model places satellites inside the host's
  radius, and validation wants them within 3 R200m).
"""

from __future__ import annotations

import numpy as np

from covmocks.core import units
from covmocks.core.errors import InputError
from covmocks.core.limits import MAX_REDSHIFT

# attribute: (lowest, highest, whether the lowest is allowed)
HEADER_RANGES = {
    "box_size": (0.0, 1e6, False),  # comoving Mpc/h
    "h": (0.0, 10.0, False),
    "Om0": (0.0, 1.0, False),
    "omega_b": (0.0, 10.0, False),  # Omega_b h^2; and Omega_b <= Om0 (check_cosmology)
    "redshift": (0.0, MAX_REDSHIFT, True),
    "w0": (-10.0, 10.0, True),
    "wa": (-10.0, 10.0, True),
}
# Host masses in Msun/h: from dwarf halos to beyond the most massive cluster.
MASS_RANGE = (1e6, 1e16)
# A host radius of at most this many R200m of its mass (R200m: 200 times the mean matter
# density, comoving): AbacusSummit's r100 is 0.75-1.15 R200m, splashback radii about
# 1-1.5 R200m; validation allows satellites out to 3 R200m of their host.
MAX_RADIUS_R200M = 2.0
# Peculiar velocities slower than light (km/s).
MAX_SPEED_KMS = 299792.458
SHAPES = {"id": 1, "pos": 2, "vel": 2, "mass": 1, "radius": 1}


def header_number(path, attrs: dict, key: str, default=None) -> float:
    """The header attribute ``key`` as a float in its ``HEADER_RANGES`` range; InputError."""
    value = attrs.get(key, default)
    if value is None:
        raise InputError(f"{path}: header has no {key}")
    array = np.asarray(value)
    if array.shape not in ((), (1,)) or array.dtype.kind not in "iuf":
        shown = repr(value) if array.size <= 4 else f"an array of shape {array.shape}"
        raise InputError(f"{path}: header attribute {key} must be a number, got {shown}")
    number = float(array.reshape(-1)[0])
    low, high, closed = HEADER_RANGES[key]
    if not (low <= number if closed else low < number) or not number <= high:
        bound = "[" if closed else "("
        raise InputError(f"{path}: header attribute {key} = {number!r} is outside "
                         f"{bound}{low:g}, {high:g}]")  # fmt: skip
    return number


def check_cosmology(path, h: float, Om0: float, omega_b: float) -> None:
    """Baryons are part of the matter: Omega_b = omega_b / h^2 at most Om0."""
    if omega_b / h**2 > Om0:
        raise InputError(f"{path}: header attribute omega_b = {omega_b!r} (Omega_b h^2) gives "
                         f"Omega_b = {omega_b / h**2:.4g} > Om0 = {Om0:.4g}")  # fmt: skip


def header_text(attrs: dict, key: str, default: str) -> str:
    """A free-text header attribute as text, whatever it holds (bytes decoded)."""
    value = attrs.get(key, default)
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def dataset(path, f, name: str):
    """The dataset ``name`` of the open file ``f``: present, a dataset, a number type and
    rank; InputError naming it otherwise."""
    import h5py

    try:
        obj = f.get(name)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"{path}: dataset {name!r} cannot be opened (a broken link?): "
                         f"{' '.join(str(exc).split())}") from None  # fmt: skip
    if obj is None:
        kind = f.get(name, getlink=True)
        if kind is not None:
            raise InputError(f"{path}: dataset {name!r} is a link to nothing ({kind!r})")
        raise InputError(f"{path}: missing dataset {name!r}")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{path}: {name!r} is a group, not a dataset")
    dtype = obj.dtype
    kinds = "iu" if name == "id" else "iuf"
    if dtype.names or dtype.kind not in kinds:
        want = "integers" if name == "id" else "numbers"
        raise InputError(f"{path}: dataset {name!r} must hold {want}, not {dtype}")
    want = ("n",) if SHAPES[name] == 1 else ("n", 3)
    shape = obj.shape
    if len(shape) != len(want) or (len(want) == 2 and shape[1] != 3):
        raise InputError(f"{path}: dataset {name!r} has shape {shape}, expected "
                         f"({', '.join(map(str, want))})")  # fmt: skip
    return obj


def check_lengths(path, lengths: dict) -> int:
    """Every dataset has the same number of rows: that number; InputError otherwise."""
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} {v}" for k, v in lengths.items())
        raise InputError(f"{path}: datasets differ in length (rows: {shown})")
    return next(iter(lengths.values()))


def check_ids(path, ids_dataset, block_rows: int = 1 << 20) -> None:
    """Ids not negative and all distinct (read in blocks; sorted whole only where they are
    not already increasing)."""
    n = ids_dataset.shape[0]
    previous, increasing = None, True
    for start in range(0, n, block_rows):
        ids = ids_dataset[start : start + block_rows]
        if ids.dtype.kind == "i" and (ids < 0).any():
            row = int(np.argmax(ids < 0))
            raise InputError(f"{path}: dataset 'id' has negative ids (row {start + row}: "
                             f"{ids[row]})")  # fmt: skip
        if increasing and len(ids):
            increasing = bool((ids[1:] > ids[:-1]).all()) and (
                previous is None or ids[0] > previous
            )
            previous = ids[-1]
    if increasing:
        return
    unique, counts = np.unique(ids_dataset[...].astype(np.uint64), return_counts=True)
    repeated = unique[counts > 1]
    if len(repeated):
        raise InputError(f"{path}: dataset 'id' repeats {len(repeated)} ids (e.g. "
                         f"{repeated[0]}): every halo needs an id of its own")  # fmt: skip


def _refuse(path, name: str, bad: np.ndarray, values: np.ndarray, first_row: int, what: str):
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
    row = int(rows[0])
    shown = values[row]
    raise InputError(f"{path}: dataset {name!r}: {len(rows)} rows {what} (row {first_row + row}: "
                     f"{np.array2string(np.asarray(shown), separator=', ')})")  # fmt: skip


def check_block(path, columns: dict, first_row: int, Om0: float) -> None:
    """Values of rows ``first_row``... as read (float64 arrays ``pos``, ``vel``, ``mass``,
    ``radius``): InputError naming the dataset, how many rows and the first."""
    for name in ("pos", "vel"):
        a = columns[name]
        bad = ~np.isfinite(a)
        if bad.any():
            _refuse(path, name, bad, a, first_row, "are not finite")
    vel = columns["vel"]
    fast = ~(np.linalg.norm(vel, axis=1) < MAX_SPEED_KMS) if len(vel) else np.zeros(0, bool)
    if fast.any():
        _refuse(path, "vel", fast, vel, first_row, "are faster than light (km/s)")
    mass, radius = columns["mass"], columns["radius"]
    low, high = MASS_RANGE
    bad = ~((mass >= low) & (mass <= high))
    if bad.any():
        _refuse(path, "mass", bad, mass, first_row, f"are outside [{low:g}, {high:g}] Msun/h")
    bad = ~((radius > 0) & np.isfinite(radius))
    if bad.any():
        _refuse(path, "radius", bad, radius, first_row, "are not positive finite numbers")
    r200m = units.r200m_h(mass, Om0)
    bad = ~(radius <= MAX_RADIUS_R200M * r200m)
    if bad.any():
        _refuse(path, "radius", bad, radius / r200m, first_row,
                f"exceed {MAX_RADIUS_R200M:g} R200m of their mass (values in R200m)")  # fmt: skip
