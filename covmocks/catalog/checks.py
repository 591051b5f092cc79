"""The checks of a catalog, fed row chunk by row chunk (``catalog.validation`` runs them).

``CatalogChecks`` sees each chunk of rows once, in row order, and keeps only what the checks
across rows need: ``is_central`` (1 byte a galaxy) and ``log10_mstar`` (4 bytes, for exact
percentiles) of every row, the halo id of every central (8 bytes a central), and the rows
of the previous chunk (a satellite's host is looked up in it and in the current chunk).
What else a row needs is kept only for rows that are not where covmocks writes them: a row
whose host lies outside those two chunks keeps 49 bytes (row, host, halo id, position,
velocity, is_central) until the end, where the hosts' rows are read again (``fetch``); a
row whose halo id is not its host central's keeps its halo id (8 bytes). covmocks writes
every central followed by its satellites, so its files keep neither: about 8.3 bytes a
galaxy for a box of 41% centrals (the catalog's columns are 63 bytes a galaxy).
"""

from __future__ import annotations

import numpy as np

from covmocks.catalog import hdf5
from covmocks.catalog.population import PopulationChecks
from covmocks.core import units

# A galaxy's mass formed may exceed the baryons of its peak halo (fb Mpeak) by this much, in
# dex, before the box fails: the model's scatter puts a few galaxies above the budget itself
# (1 of 7.3e6 in a 2e6-host box, 0.083 dex above), while twice the budget (0.3 dex) is an
# error, not a draw. Unit errors in M* are the population checks' (``central_smhm_peak``).
BUDGET_MARGIN_DEX = 0.3

# count attribute -> which rows it counts (from n galaxies and n centrals); n_hosts and
# n_satellites are checked where the writer recorded them (generate_box and mpibox do, a bare
# CatalogWriter does not)
COUNTS = {
    "n_galaxies": lambda n, n_cen: n,
    "n_centrals": lambda n, n_cen: n_cen,
    "n_hosts": lambda n, n_cen: n_cen,
    "n_satellites": lambda n, n_cen: n - n_cen,
}
REQUIRED_COUNTS = ("n_galaxies", "n_centrals")
# attributes that make a catalog self-describing, and that its QA record quotes
REQUIRED_ATTRS = ("box_size", "redshift", "seed", "realization", "snapshot", "model_name",
                  "model_version", "h", "Om0", "fb")  # fmt: skip

# The catalog keeps no host radius, so the host-relative checks measure a satellite against
# R200m of its host central's log10_mhalo: the radius enclosing 200 times the mean matter
# density (200 Om0 rho_crit0 in comoving units), comoving Mpc/h -- the radius synthetic hosts
# are given (synthetic.SyntheticSource). The model places a satellite within the input catalog's
# host radius (NFW r/R <= 1). AbacusSummit's r100_L2com is not R200m: on the Mini_N64_L32 box
# r100/R200m spans 0.75 to 1.15 and satellites reach 1.02 R200m; on a synthetic z=0.5 box of
# 1e5 hosts (2.6e5 satellites) they reach 1.00 R200m. A satellite farther than 3 R200m
# (periodic distance) is not where any input radius puts it: a position bug (wrong host,
# units, wrapping).
SATELLITE_MAX_DISTANCE_R200M = 3.0
# Satellite velocities are Gaussian about the host's, 1D dispersion V/sqrt(3) with the model's
# V = sqrt(G M / r_host): |v - v_host| = V |n|/sqrt(3), n a 3D standard normal, has no upper
# bound, so the limit must leave the tail negligible. Against V_vir = sqrt(G M / R200m)
# (physical radius) 10 V_vir is |n| < 17.3 sqrt(r_host/R200m): |n| < 10 (a chance of 2e-21
# per satellite) even where the input radius is a third of R200m. (5 V_vir would be
# |n| < 7.5 where r_host = 0.75 R200m, a chance of 4e-12 per satellite: expected false failures
# in a campaign of 1e11 satellites.) Satellites reach 2.7 V_vir on the Mini box, 3.4 V_vir on
# the synthetic z=0.5 box of 2.6e5 satellites. Catches velocities in the wrong units, or taken
# from another host where the host is of low mass.
SATELLITE_MAX_SPEED_VVIR = 10.0
# Newton's constant in (Mpc/Msun) (km/s)^2 (diffsky's fake_sats uses 4.3e-9).
NEWTON_G = 4.30091e-9

FLOATS = tuple(k for k, (dtype, *_) in hdf5.SCHEMA.items() if np.dtype(dtype).kind == "f")
UNITS = {k: unit for k, (_, _, unit, _) in hdf5.SCHEMA.items()}
# what a host's row gives its members' checks
_HOST_COLUMNS = ("halo_id", "pos", "vel", "log10_mhalo")


def r200m_comoving(log10_mass_msun, h: float, Om0: float) -> np.ndarray:
    """R200m (comoving Mpc/h) of halos of mass ``log10_mass_msun`` (log10 Msun, no h): the
    radius within which the mean density is 200 times the mean matter density."""
    return units.r200m_h(10 ** units.log_mass_msun_to_h(log10_mass_msun, h), Om0)


def virial_velocity_r200m(log10_mass_msun, h: float, Om0: float, redshift: float) -> np.ndarray:
    """V_vir = sqrt(G M / R200m) in km/s, R200m the physical radius at ``redshift``."""
    r_phys = units.comoving_h_to_physical_mpc(r200m_comoving(log10_mass_msun, h, Om0), h, redshift)
    return np.sqrt(NEWTON_G * 10 ** np.asarray(log10_mass_msun, dtype=np.float64) / r_phys)


def missing(a: dict, names) -> str:
    """'' where every attribute in ``names`` is present, else the reason naming the absent."""
    absent = [k for k in names if k not in a]
    return "no attribute " + " ".join(repr(k) for k in absent) if absent else ""


def schema_matches(d: dict) -> bool:
    """Every SCHEMA column present, with its dtype and trailing shape, all of one length
    (``d`` holds arrays, or h5py datasets: only their dtype and shape are read)."""
    if not set(hdf5.SCHEMA) <= set(d):
        return False
    n = len(d["halo_id"])
    return all(
        d[k].dtype == np.dtype(dtype) and d[k].shape == (n, *shape)
        for k, (dtype, shape, _, _) in hdf5.SCHEMA.items()
    )


class Worst:
    """(passed, reason) of a per-row limit, fed in pieces in any row order: how many rows of
    how many failed, and the worst (the largest finite failing value, the lowest row among
    equals; where no failing value is finite, the lowest failing row)."""

    def __init__(self, what: str, unit: str):
        self.what, self.unit = what, unit
        self.total = self.bad = 0
        self.best = None  # (value, row)
        self.first = None  # (row, value)

    def add(self, values: np.ndarray, bad: np.ndarray, rows: np.ndarray) -> None:
        self.total += len(rows)
        if not bad.any():
            return
        self.bad += int(bad.sum())
        j = np.flatnonzero(bad)[np.argmin(rows[bad])]
        if self.first is None or rows[j] < self.first[0]:
            self.first = (int(rows[j]), values[j])
        finite = bad & np.isfinite(values)
        if finite.any():
            top = values[finite].max()
            row = int(rows[finite & (values == top)].min())
            if self.best is None or (top, -row) > (self.best[0], -self.best[1]):
                self.best = (top, row)

    def result(self) -> tuple[bool, str]:
        if not self.bad:
            return True, ""
        value, row = self.best if self.best is not None else self.first[::-1]
        return False, (f"{self.bad} of {self.total} {self.what} (worst {value:.3g} {self.unit} "
                       f"at row {row})")  # fmt: skip


def _floats(a: dict, names) -> tuple | None:
    """The attributes ``names`` as floats; None where one is absent or is no number (the
    final conversion, in ``CatalogChecks.finish``, raises what it raised)."""
    try:
        return tuple(float(a[k]) for k in names)
    except Exception:  # noqa: BLE001  (re-raised by finish, in the checks' order)
        return None


class CatalogChecks:
    """Every check of ``validation.check_reasons`` on a catalog of ``n`` rows with ``attrs``
    and ``units`` (its schema matching), fed by ``add`` in row order; ``finish`` gives the
    results and ``summary`` the record's statistics. ``fetch(name, start, stop)`` reads rows
    of a column again, ``chunk_rows`` rows at a time, for rows whose host is not within the
    previous and current chunk."""

    def __init__(self, n: int, attrs: dict, units_: dict, fetch,
                 chunk_rows: int = hdf5.CHUNK_ROWS):  # fmt: skip
        self.n, self.attrs, self.units, self.fetch = n, attrs, units_, fetch
        self.chunk_rows = chunk_rows
        self.cen = np.empty(n, dtype=bool)
        self.mstar = np.empty(n, dtype=np.float32)
        self.central_ids: list[np.ndarray] = []
        self.suspects: list[np.ndarray] = []  # halo ids that may belong to no central
        self.far: list[tuple] = []  # rows whose host is outside the window
        self.window = None  # (first row, the host columns) of the previous chunk
        self.rows = self.n_cen = self.n_quenched = 0
        self.ok = dict.fromkeys(("finite", "in_box", "in_range", "points", "self_host", "ids"),
                                True)  # fmt: skip
        a = attrs
        self.box = _floats(a, ("box_size",)) if "box_size" in a else (np.nan,)
        self.position = None if missing(a, ("box_size", "h", "Om0")) else \
            _floats(a, ("box_size", "h", "Om0"))  # fmt: skip
        self.velocity = None if missing(a, ("h", "Om0", "redshift")) else \
            _floats(a, ("h", "Om0", "redshift"))  # fmt: skip
        fb = _floats(a, ("fb",)) if "fb" in a else None
        self.log_fb = np.log10(fb[0]) if fb is not None and fb[0] > 0 else None
        limit_d, limit_v = SATELLITE_MAX_DISTANCE_R200M, SATELLITE_MAX_SPEED_VVIR
        self.near = Worst(f"satellites beyond {limit_d:g} R200m of their host", "R200m")
        self.slow = Worst(f"satellites faster than {limit_v:g} V_vir relative to their host",
                          "V_vir")  # fmt: skip
        self.budget = Worst(f"galaxies with log10_mstar >= log10(fb) + log10_mpeak + "
                            f"{BUDGET_MARGIN_DEX}", "dex above the budget")  # fmt: skip
        h_z = _floats(a, ("h", "redshift")) if not missing(a, ("h", "redshift")) else None
        self.population = PopulationChecks(
            *(h_z or (None, None)),
            a.get("model_name"),
            a.get("model_params"),
            a.get("radius_definition") == units.R200M_DEFINITION,
        )

    def add(self, c: dict) -> None:
        """The next rows: ``c[name]`` for every SCHEMA column, of one length."""
        s = self.rows
        e = s + len(c["halo_id"])
        self.rows = e
        rows = np.arange(s, e)
        cen, host, hid = c["is_central"], c["host_index"], c["halo_id"]
        self.cen[s:e] = cen
        self.mstar[s:e] = c["log10_mstar"]
        self.n_cen += int(cen.sum())
        self.n_quenched += int(c["is_quenched"].sum())
        self.central_ids.append(hid[cen])
        self.population.add_centrals(c["log10_mhalo"][cen], c["log10_mstar"][cen])
        ok = self.ok
        ok["finite"] &= all(bool(np.all(np.isfinite(c[k]))) for k in FLOATS)
        if self.box is not None:
            ok["in_box"] &= bool(np.all((c["pos"] >= 0) & (c["pos"] < self.box[0])))
        ok["self_host"] &= bool(np.all(host[cen] == rows[cen]))
        if self.log_fb is not None:
            excess = c["log10_mstar"].astype(np.float64) - (self.log_fb + c["log10_mpeak"])
            self.budget.add(excess, ~(excess < BUDGET_MARGIN_DEX), rows)
        valid = (host >= 0) & (host < self.n)
        ok["in_range"] &= bool(valid.all())
        self.suspects.append(hid[~valid])
        current = {k: c[k] for k in _HOST_COLUMNS}
        if self.window is None:
            lo, window = s, current
        else:
            lo = self.window[0]
            window = {k: np.concatenate([self.window[1][k], current[k]]) for k in _HOST_COLUMNS}
        near = valid & (host >= lo) & (host < e)
        far = valid & ~near
        if far.any():
            self.far.append((rows[far], host[far], hid[far], c["pos"][far], c["vel"][far],
                             cen[far]))  # fmt: skip
        self._members(rows[near], host[near] - lo, lo, window, hid[near], c["pos"][near],
                      c["vel"][near], cen[near])  # fmt: skip
        self.window = (s, current)

    def _members(self, rows, at, lo, hosts, hid, pos, vel, cen) -> None:
        """Rows (of halo ids ``hid`` ...) whose host is row ``lo + at``, ``hosts`` holding the
        host columns from row ``lo``: the checks that compare a row with its host."""
        host_cen = self.cen[lo + at]
        same = hid == hosts["halo_id"][at]
        self.ok["points"] &= bool(host_cen.all())
        self.ok["ids"] &= bool(same.all())
        self.suspects.append(hid[~(host_cen & same)])
        sat = host_cen & ~cen
        if not sat.any():
            return
        rows, at, pos, vel = rows[sat], at[sat], pos[sat], vel[sat]
        lgm = hosts["log10_mhalo"][at]
        dist = speed = None
        if self.position is not None:
            box, h, om0 = self.position
            delta = pos.astype(np.float64) - hosts["pos"][at]
            delta -= box * np.round(delta / box)
            dist = np.linalg.norm(delta, axis=1) / r200m_comoving(lgm, h, om0)
            self.near.add(dist, ~(dist <= SATELLITE_MAX_DISTANCE_R200M), rows)
        if self.velocity is not None:
            h, om0, z = self.velocity
            dv = vel.astype(np.float64) - hosts["vel"][at]
            speed = np.linalg.norm(dv, axis=1) / virial_velocity_r200m(lgm, h, om0, z)
            self.slow.add(speed, ~(speed < SATELLITE_MAX_SPEED_VVIR), rows)
        self.population.add_satellites(dist, speed, lgm)

    def resolve_far(self) -> None:
        """The rows whose host was outside the window: their hosts' rows read again, chunk by
        chunk of hosts."""
        if not self.far:
            return
        far = [np.concatenate(parts) for parts in zip(*self.far, strict=True)]
        self.far = []
        order = np.argsort(far[1], kind="stable")
        rows, host, hid, pos, vel, cen = (x[order] for x in far)
        del far, order
        chunk_rows = self.chunk_rows
        starts = host // chunk_rows * chunk_rows
        for lo in np.unique(starts):
            sel = starts == lo
            hi = min(int(lo) + chunk_rows, self.n)
            hosts = {k: self.fetch(k, int(lo), hi) for k in _HOST_COLUMNS}
            self._members(rows[sel], host[sel] - lo, int(lo), hosts, hid[sel], pos[sel],
                          vel[sel], cen[sel])  # fmt: skip

    def _one_central_per_host(self) -> tuple[bool, str]:
        """Each halo_id has exactly one central: centrals' halo ids are unique and every row's
        halo id is a central's (a row whose halo id is its host central's is one)."""
        ids = np.concatenate(self.central_ids) if self.central_ids else np.empty(0, np.uint64)
        self.central_ids = []
        ids.sort()
        again = ids[1:] == ids[:-1]  # the second, third... central of a halo id
        shared = int((again & ~np.concatenate([[False], again[:-1]])).sum())
        del again
        suspects = np.unique(np.concatenate(self.suspects)) if self.suspects else ids[:0]
        self.suspects = []
        at = np.minimum(np.searchsorted(ids, suspects), max(len(ids) - 1, 0))
        orphans = suspects[~(ids[at] == suspects)] if len(ids) else suspects
        if not shared and not len(orphans):
            return True, ""
        reasons = []
        if shared:
            first = ids[1:][ids[1:] == ids[:-1]][0]
            reasons.append(f"{shared} halo ids with more than one central (e.g. {first})")
        if len(orphans):
            reasons.append(f"{len(orphans)} halo ids without a central (e.g. {orphans[0]})")
        return False, "; ".join(reasons)

    def finish(self) -> dict[str, tuple[bool, str]]:
        """name -> (passed, why it failed or ''): ``validation.check_reasons``'s checks, in
        its order. An attribute that is no number raises what the whole-catalog checks raised
        (in their order)."""
        if self.rows != self.n:
            raise ValueError(f"{self.rows} rows checked of {self.n}")
        self.resolve_far()
        a, ok, n = self.attrs, self.ok, self.n
        # the conversions, in the order the checks made them (the first to fail raises)
        box = float(a["box_size"]) if "box_size" in a else np.nan
        position = missing(a, ("box_size", "h", "Om0"))
        velocity = missing(a, ("h", "Om0", "redshift"))
        for names, absent in ((("box_size", "h", "Om0"), position),
                              (("h", "Om0", "redshift"), velocity)):  # fmt: skip
            if not absent:
                [float(a[k]) for k in names]
        counts = all(k in a for k in REQUIRED_COUNTS) and all(
            int(a[k]) == count(n, self.n_cen) for k, count in COUNTS.items() if k in a
        )
        if "fb" not in a:
            budget = (False, missing(a, ("fb",)))
        elif not (fb := float(a["fb"])) > 0:
            budget = (False, f"fb = {fb} is not positive")
        else:
            budget = self.budget.result()
        in_range = ok["in_range"]
        checks = {
            "schema_complete": (True, ""),
            "attributes_complete": (not missing(a, REQUIRED_ATTRS), missing(a, REQUIRED_ATTRS)),
            "units_match_schema": all(self.units.get(k) == u for k, u in UNITS.items()),
            "counts_match_attributes": counts,
            "finite_values": ok["finite"],
            "positions_in_box": bool(np.isfinite(box) and ok["in_box"]),
            "host_index_points_at_centrals": in_range and ok["points"],
            "centrals_host_themselves": ok["self_host"],
            "host_ids_consistent": in_range and ok["ids"],
            "one_central_per_host": self._one_central_per_host(),
            "mstar_below_baryon_budget": budget,
            "satellites_near_host": (False, position) if position else self.near.result(),
            "satellite_velocities_near_host": (False, velocity) if velocity else self.slow.result(),
            **self.population.results(position, velocity),
        }
        return {
            name: (bool(c[0]), c[1]) if isinstance(c, tuple) else (bool(c), "")
            for name, c in checks.items()
        }

    def summary(self) -> dict:
        """Summary statistics for the campaign report (the QA record's ``summary``)."""
        n = self.n
        return {
            "n_galaxies": n,
            "n_centrals": self.n_cen,
            "satellite_fraction": float((~self.cen).mean()) if n else 0.0,
            "quenched_fraction": self.n_quenched / n if n else 0.0,
            "log10_mstar_percentiles_5_50_95": [
                float(x) for x in np.percentile(self.mstar, [5, 50, 95])
            ]
            if n
            else [],
        }
