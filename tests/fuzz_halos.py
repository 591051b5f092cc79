"""Generic HDF5 halo files (docs/schema.md) for the fuzzing tests: a valid file drawn by
hypothesis, then damaged (datasets dropped, of the wrong shape or dtype, NaN, infinite,
negative, zero or huge values, attributes missing or of the wrong type, empty, truncated,
zero-length or garbage files), with what reading it must give: the halos, or a clean error
naming the file and, where one is to blame, the dataset or attribute.

Each damage has a kind (``HaloFile.kinds``, e.g. ``values:mass:nan``); ``single_damage``
makes a valid file with the one damage of a kind (test_fuzz.py's regression cases).
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
from hypothesis import strategies as st

from covmocks.core import units

DATASETS = ("id", "pos", "vel", "mass", "radius")
REQUIRED_ATTRS = ("box_size", "h", "Om0", "omega_b", "redshift")
OPTIONAL_NUMBERS = ("w0", "wa")
OPTIONAL_TEXT = ("sim_name", "mass_definition", "position_definition", "radius_definition")
SHAPES = {"id": 1, "pos": 2, "vel": 2, "mass": 1, "radius": 1}

OK, EITHER, ERROR = 0, 1, 2  # what reading a file may give: halos, either, an error


@dataclasses.dataclass
class HaloFile:
    """What to write, and what reading it must give."""

    datasets: dict  # name -> array, or "group" / "dangling" (a group, a dangling link)
    attrs: dict
    options: dict  # dataset creation keywords (chunks, compression)
    file: str | None = None  # file-level damage: zero, garbage, signature, truncate, ...
    truncate: float = 0.5
    kinds: list = dataclasses.field(default_factory=list)
    # what each damage did, by what it damaged: a later damage of the same attribute replaces
    # the earlier one (an attribute dropped, then written again, is there)
    effects: dict = dataclasses.field(default_factory=dict)

    def damage(self, kind: str, level: int, *names: str, target: str | None = None) -> None:
        self.kinds.append(kind)
        self.effects[target or f"{len(self.kinds)}:{kind}"] = (level, names)

    @property
    def expect(self) -> int:
        """OK (a correct read), EITHER (that or a clean error) or ERROR."""
        return max((level for level, _ in self.effects.values()), default=OK)

    @property
    def names(self) -> set:
        """What a clean error may name (one of them); empty: only the file."""
        if self.file is not None:
            return set()  # nothing inside an unreadable file is to blame
        return {n for level, names in self.effects.values() if level > OK for n in names}

    def write(self, path) -> None:
        import h5py

        if self.file == "missing":
            return
        if self.file == "directory":
            os.mkdir(path)
            return
        if self.file == "zero":
            open(path, "wb").close()
            return
        if self.file == "garbage":
            with open(path, "wb") as f:
                f.write(np.random.default_rng(len(self.kinds)).bytes(2048))
            return
        if self.file == "signature":
            with open(path, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n" + b"\x00" * 8 + b"not really HDF5" * 50)
            return
        with h5py.File(path, "w") as f:
            for name, value in self.datasets.items():
                if isinstance(value, str) and value == "group":
                    f.create_group(name).create_dataset("inner", data=np.ones(3))
                elif isinstance(value, str) and value == "dangling":
                    f[name] = h5py.SoftLink("/no/such/object")
                elif isinstance(value, str) and value == "external":
                    f[name] = h5py.ExternalLink("no_such_file.hdf5", "/mass")
                elif np.ndim(value) == 0 or value.dtype.kind in "OSUc" or value.dtype.names:
                    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
                        f.create_dataset(name, data=value, dtype=h5py.string_dtype())
                    else:
                        f.create_dataset(name, data=value)
                else:
                    f.create_dataset(name, data=value, **self.options)
            for key, value in self.attrs.items():
                f.attrs[key] = value
        if self.file == "truncate":
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(int(size * self.truncate))

    def good_rows(self, log10_mhost_min_msun: float) -> np.ndarray:
        """The rows a correct read keeps (a valid file's masses above the cut)."""
        mass = np.asarray(self.datasets["mass"], dtype=np.float64)
        log_m = units.log_mass_h_to_msun(np.log10(mass), float(self.attrs["h"]))
        return np.flatnonzero(log_m >= log10_mhost_min_msun)


def valid_halo_file(path, n=6, **changes):
    """A valid generic HDF5 halo file of ``n`` halos, with ``changes`` (name -> value; a
    value None drops a dataset or attribute, "group" makes a group of a dataset) applied."""
    import h5py

    rng = np.random.default_rng(0)
    mass = 10 ** rng.uniform(11, 13, n)
    data = {"id": np.arange(n), "pos": rng.random((n, 3)) * 50, "vel": rng.normal(0, 200, (n, 3)),
            "mass": mass, "radius": units.r200m_h(mass, 0.3)}  # fmt: skip
    attrs = {"box_size": 50.0, "h": 0.7, "Om0": 0.3, "omega_b": 0.022, "redshift": 0.5}
    with h5py.File(path, "w") as f:
        for name, value in {**data, **{k: v for k, v in changes.items() if k in data}}.items():
            if isinstance(value, str) and value == "group":
                f.create_group(name)
            elif value is not None:
                f[name] = value
        for key, value in {**attrs, **{k: v for k, v in changes.items() if k in attrs}}.items():
            if value is not None:
                f.attrs[key] = value
    return path


def _valid(n: int, seed: int, box: float, id_kind: str, float32: bool, with_optional: bool):
    rng = np.random.default_rng(seed)
    if id_kind == "arange":
        ids = np.arange(n, dtype=np.int64)
    elif id_kind == "large":
        ids = rng.choice(2**62, size=n, replace=False).astype(np.uint64) + np.uint64(2**62)
    else:
        ids = rng.permutation(n).astype(np.uint32) * np.uint32(7)
    f = np.float32 if float32 else np.float64
    Om0 = float(rng.uniform(0.25, 0.35))
    # at most 10^14.5 Msun/h: the model's histories are NaN for 10^15 at z = 3 (generate
    # then fails validation: test_fuzz.py's test_fixed_generate_bug_valid_file)
    mass = 10 ** rng.uniform(10.0, 14.5, n)
    datasets = {
        "id": ids,
        "pos": (rng.random((n, 3)) * box).astype(f),
        "vel": rng.normal(0.0, 300.0, (n, 3)).astype(f),
        "mass": mass.astype(f),
        # R200m of the mass (comoving Mpc/h) times 0.75-1.15, as AbacusSummit's r100: the
        # model places satellites inside it, validation wants them within 3 R200m
        "radius": (units.r200m_h(mass, Om0) * rng.uniform(0.75, 1.15, n)).astype(f),
    }
    attrs = {"box_size": box, "h": float(rng.uniform(0.6, 0.8)),
             "Om0": Om0, "omega_b": float(rng.uniform(0.02, 0.025)),
             "redshift": float(rng.choice([0.0, 0.5, 1.1, 3.0]))}  # fmt: skip
    if with_optional:
        attrs |= {"w0": -0.9, "wa": 0.1, "sim_name": "fuzz_sim", "mass_definition": "M200m",
                  "position_definition": "centre", "radius_definition": "R200m"}  # fmt: skip
    return datasets, attrs


BAD_ATTR_VALUES = {
    # name: (value, level for box_size/h/Om0, for omega_b, for redshift, for w0/wa)
    "text": ("abc", ERROR, ERROR, ERROR, ERROR),
    "empty_text": ("", ERROR, ERROR, ERROR, ERROR),
    "bytes": (np.bytes_(b"\xff\xfe"), ERROR, ERROR, ERROR, ERROR),
    "number_text": ("0.5", EITHER, EITHER, EITHER, EITHER),
    "nan": (np.nan, ERROR, ERROR, ERROR, ERROR),
    "inf": (np.inf, ERROR, ERROR, ERROR, ERROR),
    "-inf": (-np.inf, ERROR, ERROR, ERROR, ERROR),
    "negative": (-0.5, ERROR, ERROR, EITHER, EITHER),
    "minus_two": (-2.0, ERROR, ERROR, ERROR, EITHER),
    "zero": (0.0, ERROR, EITHER, OK, EITHER),
    "huge": (1e300, EITHER, EITHER, EITHER, EITHER),
    "pair": (np.array([0.5, 0.6]), ERROR, ERROR, ERROR, ERROR),
    "one_element": (np.array([0.5]), EITHER, EITHER, EITHER, EITHER),
    "bool": (np.bool_(True), EITHER, EITHER, EITHER, EITHER),
    "int": (np.int64(1), EITHER, EITHER, EITHER, EITHER),
}
TEXT_ATTR_VALUES = ["", "名前 😀", "$(touch x)", np.bytes_(b"\xff"), 3.5, np.arange(3)]
BAD_VALUES = ["nan", "inf", "-inf", "negative", "zero", "huge", "large"]
# level of a bad value in each dataset
VALUE_LEVELS = {
    "mass": {"nan": ERROR, "inf": ERROR, "-inf": ERROR, "negative": ERROR, "zero": ERROR,
             "huge": EITHER, "large": EITHER},
    "radius": {"nan": ERROR, "inf": ERROR, "-inf": ERROR, "negative": ERROR, "zero": ERROR,
               "huge": EITHER, "large": EITHER},
    "pos": {"nan": ERROR, "inf": ERROR, "-inf": ERROR, "negative": OK, "zero": OK,
            "huge": OK, "large": OK},
    "vel": {"nan": ERROR, "inf": ERROR, "-inf": ERROR, "negative": OK, "zero": OK,
            "huge": EITHER, "large": EITHER},
}  # fmt: skip
# "large": 30 times the value (a radius of 30 R200m, a mass of 30 times its radius's)
NUMBER = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "negative": -1.5, "zero": 0.0,
          "huge": 1e300, "large": 30.0}  # fmt: skip
DTYPES = ["float32", "float64", "int64", "uint8", "bool", "complex", "bytes", "text", "compound"]
SHAPE_VARIANTS = ["short", "long", "transpose", "flat", "column", "wide", "scalar", "cube"]
FILE_DAMAGE = ["zero", "garbage", "signature", "truncate", "directory", "missing"]
OPERATIONS = ["drop_dataset", "drop_attr", "shape", "dtype", "values", "ids", "empty",
              "extra", "attr", "text_attr", "group", "link", "file"]  # fmt: skip


def _reshape(a: np.ndarray, variant: str, n: int) -> np.ndarray:
    if variant == "short":
        return a[: max(n - 1, 0)]
    if variant == "long":
        return np.concatenate([a, a[:1] if n else np.ones((1,) + a.shape[1:], a.dtype)])
    if variant == "transpose":
        return a.T.copy()
    if variant == "flat":
        return a.reshape(-1)
    if variant == "column":
        return a.reshape(len(a), -1)[:, :1].copy()
    if variant == "wide":
        return np.repeat(a.reshape(len(a), -1)[:, :1], 4, axis=1)
    if variant == "scalar":
        return np.asarray(a.reshape(-1)[0] if a.size else 1.0)
    return a.reshape(a.shape + (1,))  # cube


def _retype(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "complex":
        return a.astype(np.complex128) + 1j
    if dtype == "bytes":
        return a.astype("S24")
    if dtype == "text":
        return np.array([str(x) for x in a.reshape(-1)], dtype=object).reshape(a.shape)
    if dtype == "compound":
        out = np.zeros(a.shape, dtype=[("value", "f8"), ("error", "f8")])
        out["value"] = a
        return out
    with np.errstate(all="ignore"):
        return a.astype(dtype)


def _value_level(name: str, a: np.ndarray) -> int:
    """Masses and radii must be finite and positive, positions and velocities finite."""
    if name == "id" or a.dtype.kind not in "fiub":
        return OK
    values = a.astype(np.float64)
    if not np.isfinite(values).all():
        return ERROR
    if name in ("mass", "radius") and (values <= 0).any():
        return ERROR
    return OK


def _dtype_level(name: str, dtype: str, before: np.ndarray, after: np.ndarray) -> int:
    """Numbers are fine where they hold valid values (floats of any width; integers); text,
    complex and compound types are not numbers; ids are integers."""
    if dtype in ("complex", "bytes", "text", "compound"):
        return ERROR
    changed = not np.array_equal(after.astype(np.float64), before.astype(np.float64))
    if name == "id":
        return EITHER if changed or dtype == "bool" or dtype.startswith("float") else OK
    # a conversion that changed the values (truncated, wrapped) is the file's business
    return max(EITHER if changed or dtype == "bool" else OK, _value_level(name, after))


@st.composite
def halo_files(draw):
    """A valid generic HDF5 halo file damaged 0-3 times: -> HaloFile."""
    n = draw(st.integers(1, 40))
    datasets, attrs = _valid(
        n, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([25.0, 100.0, 500.0, 2000.0])),
        draw(st.sampled_from(["arange", "large", "uint32"])), draw(st.booleans()),
        draw(st.booleans()),
    )  # fmt: skip
    options = draw(st.sampled_from([{}, {"chunks": True}, {"compression": "gzip"},
                                    {"compression": "lzf", "shuffle": True}]))  # fmt: skip
    case = HaloFile(datasets, attrs, options)

    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(OPERATIONS))
        name = draw(st.sampled_from(DATASETS))
        present = isinstance(datasets.get(name), np.ndarray)
        right = (n, 3) if SHAPES[name] == 2 else (n,)
        intact = present and datasets[name].shape == right and n > 0
        if op == "drop_dataset":
            datasets.pop(name, None)
            case.damage(f"drop:{name}", ERROR, name)
        elif op == "drop_attr":
            key = draw(st.sampled_from(REQUIRED_ATTRS + OPTIONAL_NUMBERS + OPTIONAL_TEXT))
            kind, level = f"drop_attr:{key}", ERROR if key in REQUIRED_ATTRS else OK
            attrs.pop(key, None)
            case.damage(kind, level, key, target=f"attr:{key}")
        elif op == "shape" and intact:
            variant = draw(st.sampled_from(SHAPE_VARIANTS))
            kind = f"shape:{name}:{variant}"
            a = _reshape(datasets[name], variant, n)
            level = OK if a.shape == right else ERROR
            # a length mismatch may be reported as any dataset's
            blamed = DATASETS if variant in ("short", "long") else (name,)
            case.damage(kind, level, *blamed)
            datasets[name] = a
        elif op == "dtype" and intact and datasets[name].dtype.kind in "fiub":
            dtype = draw(st.sampled_from(DTYPES))
            kind = f"dtype:{name}:{dtype}"
            after = _retype(datasets[name], dtype)
            level = _dtype_level(name, dtype, datasets[name], after)
            case.damage(kind, level, name)
            datasets[name] = after
        elif op == "values" and intact and name != "id" and datasets[name].dtype.kind == "f":
            bad = draw(st.sampled_from(BAD_VALUES))
            a = datasets[name]
            rows = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
            with np.errstate(over="ignore"):
                value = a.dtype.type(NUMBER[bad])  # 1e300 is inf in float32
                if bad == "large":
                    value = a[rows] * value
            if bad == "huge" and not np.isfinite(value):
                bad = "inf"
            kind, level = f"values:{name}:{bad}", VALUE_LEVELS[name][bad]
            a[rows] = value
            case.damage(kind, level, name)
        elif op == "ids" and name == "id" and intact and datasets["id"].dtype.kind in "iu":
            what = draw(st.sampled_from(["negative", "duplicate"]))
            kind = f"ids:{what}"
            if what == "negative" or n > 1:
                ids = datasets["id"].astype(np.int64)
                ids[0] = -7 if what == "negative" else ids[-1]
                datasets["id"] = ids
                case.damage(kind, EITHER, "id")
        elif op == "empty" and not case.kinds:
            for key, a in datasets.items():
                if isinstance(a, np.ndarray) and a.ndim:
                    datasets[key] = a[:0]
            n = 0
            case.damage("empty", EITHER)
        elif op == "extra":
            datasets[draw(st.sampled_from(["extra", "ids", "Mass", "pos_extra"]))] = np.ones(2)
            attrs[draw(st.sampled_from(["note", "BoxSize", "units"]))] = "something"
            case.damage("extra", OK)
        elif op == "attr":
            key = draw(st.sampled_from(REQUIRED_ATTRS + OPTIONAL_NUMBERS))
            bad = draw(st.sampled_from(sorted(BAD_ATTR_VALUES)))
            value, *levels = BAD_ATTR_VALUES[bad]
            level = levels[{"omega_b": 1, "redshift": 2, "w0": 3, "wa": 3}.get(key, 0)]
            kind = f"attr:{key}:{bad}"
            attrs[key] = value
            case.damage(kind, level, key, target=f"attr:{key}")
        elif op == "text_attr":
            key = draw(st.sampled_from(OPTIONAL_TEXT))
            attrs[key] = draw(st.sampled_from(TEXT_ATTR_VALUES))
            case.damage("text_attr", OK, target=f"attr:{key}")
        elif op in ("group", "link"):
            datasets[name] = "group" if op == "group" else draw(
                st.sampled_from(["dangling", "external"]))  # fmt: skip
            case.damage(f"{op}:{name}", ERROR, name)
        elif op == "file":
            damage = draw(st.sampled_from(FILE_DAMAGE))
            case.file = damage
            case.truncate = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5, 0.9, 0.99]))
            case.damage(f"file:{damage}", ERROR)
            break
    return case


def names_one_of(message: str, names) -> bool:
    """Whether ``message`` names one of ``names`` as a word (``id`` is not in ``invalid``)."""
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![a-z0-9_])", message)
               for n in names)  # fmt: skip


def single_damage(kind: str, n: int = 10) -> HaloFile:
    """A valid file (``n`` halos) with the one damage ``kind`` (as ``HaloFile.kinds``)."""
    datasets, attrs = _valid(n, 1, 100.0, "arange", False, False)
    case = HaloFile(datasets, attrs, {})
    op, name, *rest = kind.split(":") + [""]
    right = (n, 3) if SHAPES.get(name) == 2 else (n,)
    if op == "attr":
        value, *levels = BAD_ATTR_VALUES[rest[0]]
        attrs[name] = value
        level = levels[{"omega_b": 1, "redshift": 2, "w0": 3, "wa": 3}.get(name, 0)]
        blamed = (name,)
    elif op in ("group", "link"):
        datasets[name] = "group" if op == "group" else "dangling"
        level, blamed = ERROR, (name,)
    elif op == "shape":
        datasets[name] = _reshape(datasets[name], rest[0], n)
        level = OK if datasets[name].shape == right else ERROR
        blamed = DATASETS if rest[0] in ("short", "long") else (name,)
    elif op == "dtype":
        after = _retype(datasets[name], rest[0])
        level, blamed = _dtype_level(name, rest[0], datasets[name], after), (name,)
        datasets[name] = after
    elif op == "values":
        a = datasets[name]
        a[1] = a[1] * 30 if rest[0] == "large" else NUMBER[rest[0]]
        level, blamed = VALUE_LEVELS[name][rest[0]], (name,)
    elif op == "ids":
        datasets["id"][0] = -7 if name == "negative" else datasets["id"][1]
        level, blamed = EITHER, ("id",)
    elif op == "empty":
        for key in DATASETS:
            datasets[key] = datasets[key][:0]
        level, blamed = EITHER, ()
    else:
        raise ValueError(f"no such damage: {kind}")
    case.damage(kind, level, *blamed)
    return case
