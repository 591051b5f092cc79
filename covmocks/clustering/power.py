"""Power-spectrum multipoles P0, P2, P4 of one box's galaxy sample, real and redshift space.

Estimator: abacusutils' ``abacusnbody.analysis.power_spectrum.calc_power`` (mesh assignment,
TSC, interlaced and compensated by default). Units: positions comoving Mpc/h in [0, box_size),
velocities peculiar km/s, k h/Mpc, P (Mpc/h)^3, number density (h/Mpc)^3.

Conventions:

- Plane-parallel line of sight along a box axis a (0, 1, 2 = x, y, z), mu = k_a/|k|;
  calc_power takes the last column as line of sight, so ``multipoles`` moves axis a there.
- Redshift space along axis a: s_a = x_a + v_a (1+z) / H(z), H(z) = 100 E(z) km/s/(Mpc/h),
  wrapped periodically; the other coordinates are unchanged.
- ``real``: real-space positions, line of sight z. ``redshift_<a>``: displaced and measured
  along a; ``redshift``: the mean over the three axes.
- Shot noise is NOT subtracted; 1/n is stored beside the poles. Measured on uniform random
  points, P0 = 1/n to 0.2% up to the mesh's Nyquist frequency (interlaced, compensated TSC).
- k bins on the box's lattice: a periodic box of side L holds modes k = k_f n (n integer
  vectors, k_f = 2 pi / L), so |k| = k_f sqrt(m), m integer. Bins are ``dk`` k_f wide (``dk``
  a whole number), the first lower edge at k_f / 2, edges at (1/2 + j dk) k_f up to the last
  one at or below ``k_max``: centres fall on k_f, 2 k_f, ... for dk = 1, no bin is empty
  (every bin holds a whole shell m = i^2) and no shell lies on an edge ((i + 1/2)^2 is never
  an integer), so floating-point rounding decides nothing. The convention of nbodykit and
  pypower. calc_power assigns lo < k <= hi; the k = 0 mode falls below the first edge.
  N_mode counts k and -k separately: a bin holds n_modes/2 independent modes, and for
  Gaussian modes Var(P0) = 2 P^2 / n_modes. ``k_avg`` (mode-weighted mean |k|) is what
  figures plot; ``k_mid`` is the bin centre.
- An empty sample gives NaN poles, n_objects 0, number_density 0 and shot_noise inf.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

logger = logging.getLogger(__name__)

POLES = (0, 2, 4)
AXES = "xyz"
LOS_CONVENTION = (
    "plane-parallel, line of sight along a box axis, mu = k_axis/|k|; redshift-space "
    "position s = x + v (1+z) / (100 E(z)) Mpc/h along that axis (v peculiar km/s), wrapped; "
    "real: real-space positions, line of sight z; redshift_x/y/z: displaced and measured along "
    "that axis; redshift: mean of the three"
)
ARRAYS = {  # dataset: units
    "k_mid": "h/Mpc",
    "k_avg": "h/Mpc",
    "n_modes": "dimensionless",
    "real": "(Mpc/h)^3",
    **{f"redshift_{a}": "(Mpc/h)^3" for a in AXES},
    "redshift": "(Mpc/h)^3",
}
# The clustering record's format: 2 since k bins lie on the box's lattice (edges at
# (1/2 + j dk) k_f; version 1 had linear bins from 0, with shells on the edges).
RECORD_VERSION = 2
SAMPLE_ATTRS = ("n_objects", "number_density_h3_mpc3", "shot_noise_mpc3_h3")


def fundamental(box_size: float) -> float:
    """The box's fundamental frequency k_f = 2 pi / L, h/Mpc (L in Mpc/h)."""
    return 2.0 * np.pi / float(box_size)


@dataclasses.dataclass(frozen=True)
class PowerSettings:
    """calc_power settings. ``dk``: bin width in units of the fundamental frequency (module
    docstring); ``k_max`` (h/Mpc) bounds the last bin's upper edge; None: half the mesh's
    Nyquist frequency, pi nmesh / (2 L); at most the Nyquist frequency pi nmesh / L."""

    nmesh: int = 128
    k_max: float | None = None  # h/Mpc
    dk: int = 1  # bin width / k_f
    paste: str = "TSC"
    interlaced: bool = True
    compensated: bool = True

    def __post_init__(self):
        if int(self.nmesh) != self.nmesh or self.nmesh < 8 or self.nmesh % 2:
            raise ValueError(f"nmesh must be an even integer >= 8, got {self.nmesh!r}")
        if self.k_max is not None and not self.k_max > 0:
            raise ValueError(f"k_max must be positive or None, got {self.k_max!r}")
        if isinstance(self.dk, bool) or int(self.dk) != self.dk or self.dk < 1:
            raise ValueError(f"dk must be a whole number of fundamentals >= 1, got {self.dk!r}")
        if self.paste not in ("TSC", "CIC"):
            raise ValueError(f"paste must be 'TSC' or 'CIC', got {self.paste!r}")

    def problem(self, box_size: float) -> str | None:
        """Why these settings cannot bin a box of side ``box_size`` Mpc/h, or None."""
        kf, nyquist = fundamental(box_size), np.pi * self.nmesh / float(box_size)
        k_max = nyquist / 2 if self.k_max is None else float(self.k_max)
        if k_max > nyquist * (1 + 1e-12):  # calc_power counts the k_z = Nyquist plane twice
            return (f"k_max {k_max:g} h/Mpc is above the mesh's Nyquist frequency {nyquist:.6g} "
                    f"h/Mpc (nmesh {self.nmesh}, box {box_size:g} Mpc/h)")  # fmt: skip
        first = (0.5 + self.dk) * kf
        if k_max < first * (1 - 1e-12):
            return (f"k_max {k_max:g} h/Mpc is below the first bin's upper edge {first:.6g} h/Mpc "
                    f"((1/2 + dk) k_f, k_f = 2 pi / {box_size:g} Mpc/h): no k bin")  # fmt: skip
        return None

    def k_edges(self, box_size: float) -> np.ndarray:
        """The bin edges (h/Mpc): (1/2 + j dk) k_f, j = 0 .. n, the last at or below k_max;
        ValueError where ``problem`` names one."""
        why = self.problem(box_size)
        if why:
            raise ValueError(why)
        kf = fundamental(box_size)
        k_max = np.pi * self.nmesh / (2 * float(box_size)) if self.k_max is None else self.k_max
        n = int(np.floor((k_max / kf - 0.5) / self.dk * (1 + 1e-12)))
        return kf * (0.5 + self.dk * np.arange(n + 1))

    def describe(self) -> dict:
        """The settings as a plain JSON-able dict (for file attributes)."""
        from importlib.metadata import version

        return {
            "nmesh": int(self.nmesh),
            "k_max": None if self.k_max is None else float(self.k_max),
            "dk_fundamentals": int(self.dk),
            "paste": self.paste,
            "interlaced": bool(self.interlaced),
            "compensated": bool(self.compensated),
            "k_max_default": "pi*nmesh/(2*box_size)",
            "k_edges": "(1/2 + j*dk) * 2*pi/box_size, j = 0.., up to k_max; lo < k <= hi",
            "estimator": "abacusnbody.analysis.power_spectrum.calc_power",
            "abacusutils_version": version("abacusutils"),
        }


def redshift_space(pos, vel, axis: int, redshift: float, hubble_e: float, box_size: float):
    """Positions moved along box axis ``axis`` by v (1+z) / H(z), H(z) = 100 hubble_e
    km/s/(Mpc/h) (hubble_e = H(z)/H0), in comoving Mpc/h, wrapped into [0, box_size).
    Returns a new array, float64 or float32 as given."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (x, y, z), got {axis!r}")
    pos = np.asarray(pos)
    out = pos.copy()
    shift = np.asarray(vel)[:, axis].astype(np.float64) * ((1.0 + redshift) / (100.0 * hubble_e))
    moved = np.mod(pos[:, axis].astype(np.float64) + shift, box_size).astype(pos.dtype)
    moved[moved >= box_size] = 0  # rounding to the dtype may reach box_size
    out[:, axis] = moved
    return out


def multipoles(pos, box_size: float, settings: PowerSettings, los_axis: int = 2) -> dict:
    """calc_power of positions ``pos`` (n, 3) with line of sight along box axis ``los_axis``:
    {"k_mid": (nk,), "k_avg": (nk,), "n_modes": (nk,) int, "poles": (3, nk)} (P0, P2, P4;
    shot noise not subtracted). An empty ``pos`` gives NaN poles."""
    from abacusnbody.analysis.power_spectrum import calc_power

    box_size = float(box_size)  # a numba specialization per argument type: keep one
    pos = np.asarray(pos)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"positions must have shape (n, 3), got {pos.shape}")
    if not np.all(np.isfinite(pos)) or pos.min(initial=0) < 0 or pos.max(initial=0) > box_size:
        raise ValueError(f"positions must be finite and in [0, box_size={box_size:g}) Mpc/h")
    if los_axis not in (0, 1, 2):
        raise ValueError(f"los_axis must be 0, 1 or 2 (x, y, z), got {los_axis!r}")
    order = [(los_axis + 1) % 3, (los_axis + 2) % 3, los_axis]  # calc_power: last column = LOS
    empty = len(pos) == 0
    # C order float32 (fancy indexing gives F order: strided mesh assignment, and a second
    # numba compilation)
    work = np.ascontiguousarray(np.zeros((1, 3)) if empty else pos[:, order], np.float32)
    work[work >= box_size] = 0  # calc_power wants [0, box_size)
    edges = settings.k_edges(box_size)  # the first edge, k_f / 2, drops k = 0
    table = calc_power(
        work, box_size, kbins=edges, k_max=edges[-1], nmesh=int(settings.nmesh),
        paste=settings.paste, compensated=bool(settings.compensated),
        interlaced=bool(settings.interlaced), poles=list(POLES),
    )  # fmt: skip
    n_modes = np.asarray(table["N_mode_poles"], dtype=np.int64)
    poles = np.asarray(table["poles"], dtype=np.float64).T.copy()
    k_avg = np.asarray(table["k_avg"], dtype=np.float64).copy()
    poles[:, n_modes == 0] = np.nan
    k_avg[n_modes == 0] = np.nan
    if empty:
        poles[:] = np.nan
    return {"k_mid": 0.5 * (edges[1:] + edges[:-1]), "k_avg": k_avg, "n_modes": n_modes,
            "poles": poles}  # fmt: skip


def measure(pos, vel, box_size: float, redshift: float, hubble_e: float, settings: PowerSettings):
    """One sample of one box: {"k_mid", "k_avg", "n_modes", "real": (3, nk), "redshift_x",
    "redshift_y", "redshift_z": (3, nk) (displaced and measured along that axis), "redshift":
    their mean, "n_objects", "number_density" ((h/Mpc)^3), "shot_noise" ((Mpc/h)^3, 1/n, not
    subtracted)}. An empty sample: NaN poles, number_density 0, shot_noise inf, a warning."""
    pos = np.asarray(pos)
    n = len(pos)
    if np.shape(vel) != pos.shape:
        raise ValueError(f"velocities {np.shape(vel)} and positions {pos.shape} differ in shape")
    if n == 0:
        logger.warning("empty sample: power spectra are NaN")
    out = multipoles(pos, box_size, settings, los_axis=2)
    out["real"] = out.pop("poles")
    for axis, name in enumerate(AXES):
        moved = redshift_space(pos, vel, axis, redshift, hubble_e, box_size)
        out[f"redshift_{name}"] = multipoles(moved, box_size, settings, los_axis=axis)["poles"]
    out["redshift"] = np.mean([out[f"redshift_{a}"] for a in AXES], axis=0)
    density = n / float(box_size) ** 3
    out.update(n_objects=n, number_density=density,
               shot_noise=1.0 / density if n else float("inf"))  # fmt: skip
    logger.debug("measured %d objects, %d k bins", n, len(out["k_mid"]))
    return out


def write_record(path, samples: dict[str, dict], attrs: dict) -> None:
    """Write one box's clustering record to ``path``, atomically (a temporary file beside it,
    fsynced and renamed): one group per sample with the arrays of ``measure`` and, as group
    attributes, n_objects, number_density_h3_mpc3, shot_noise_mpc3_h3,
    shot_noise_subtracted=False and every key of samples[name]["selection"]; root
    attributes ``attrs`` and the units, poles and line-of-sight convention. Dicts and lists
    become JSON strings."""
    from covmocks.catalog.hdf5 import replaced_file, write_attrs

    with replaced_file(path) as f:
        write_attrs(f, {**attrs, "record_version": RECORD_VERSION, "poles": list(POLES),
                        "k_units": "h/Mpc",
                        "power_units": "(Mpc/h)^3", "number_density_units": "(h/Mpc)^3",
                        "los_convention": LOS_CONVENTION,
                        "shot_noise_subtracted": False})  # fmt: skip
        for name, sample in samples.items():
            if not name or "/" in name:
                raise ValueError(f"sample name {name!r} is not a plain HDF5 group name")
            selection = dict(sample.get("selection", {}))
            clash = set(selection) & {*SAMPLE_ATTRS, "shot_noise_subtracted"}
            if clash:
                raise ValueError(f"selection of {name!r} overrides {sorted(clash)}")
            group = f.create_group(name)
            for key, units in ARRAYS.items():
                group.create_dataset(key, data=np.asarray(sample[key]))
                group[key].attrs["units"] = units
            write_attrs(group, {"n_objects": int(sample["n_objects"]),
                                "number_density_h3_mpc3": float(sample["number_density"]),
                                "shot_noise_mpc3_h3": float(sample["shot_noise"]),
                                "shot_noise_subtracted": False, **selection})  # fmt: skip


def _plain(value):
    """HDF5 attribute values as Python scalars and str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_record(path) -> dict:
    """A clustering record: {"attrs": {...}, "samples": {name: {"attrs": {...}, "k_mid": ...,
    "redshift": ...}}}. JSON attributes (dicts, lists) stay JSON strings."""
    import h5py

    with h5py.File(path, "r") as f:
        samples = {
            name: {
                "attrs": {k: _plain(v) for k, v in group.attrs.items()},
                **{key: group[key][...] for key in group},
            }
            for name, group in f.items()
        }
        return {"attrs": {k: _plain(v) for k, v in f.attrs.items()}, "samples": samples}
