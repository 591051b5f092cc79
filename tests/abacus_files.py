"""AbacusSummit-format test files made from the Mini_N64_L32 catalog: cleaning files in the real
format (:func:`write_cleaning`), and a copy whose header claims another redshift
(:func:`write_with_redshift`).

AbacusSummit's "cleaned" halo catalogs (merger-tree cleaning, Bose et al. 2022) are the raw
CompaSO ``halo_info`` files plus, per superslab, one ``cleaned_halo_info_XXX.asdf`` (and one
``cleaned_rvpid_XXX.asdf`` with the particles that moved). The shared Mini catalog has none, so
:func:`write_cleaning` writes a small, faithful set: a few chosen halos are merged into others.

Where the format was learned
----------------------------
- Reader: abacusutils 2.1.2, ``abacusnbody/data/compaso_halo_catalog.py``:
  ``CompaSOHaloCatalog._setup_file_paths`` (where files are looked for), ``__init__`` (header key
  ``TimeSliceRedshiftsPrev``; ``N_total`` renamed to ``N``), ``_setup_fields`` / ``_read_halo_info``
  (columns, row-count check), the module dtype ``clean_dt_progen`` (column dtypes),
  ``_compute_new_subsample_indices`` / ``_load_subsamples`` (``N_total == 0`` means merged away;
  ``npstart{A,B}_merge`` / ``npout{A,B}_merge`` index ``rvint_{A,B}`` / ``packedpid_{A,B}`` of
  ``cleaned_rvpid_XXX.asdf``), and ``abacusnbody/data/asdf.py`` (the ``blsc`` Blosc compressor).
- Writer: ``postprocess_trees/build_particle_lists.py`` in github.com/sownakbose/abacus_mergertree
  (the script that made the AbacusSummit cleaning files): tree ``{"data": {...}, "header": ...}``,
  header = the slab's ``halo_info`` header plus ``NumTimeSliceRedshiftsPrev`` and
  ``TimeSliceRedshiftsPrev``, ``af.write_to(fp, all_array_compression="blsc")``;
  ``haloindex = FullStepNumber*10**12 + superslab*10**9 + row_in_superslab`` (its ``unpack_inds``);
  ``is_merged_to`` = the target's ``haloindex`` or -1; ``N_merge`` = sum of the merged halos' ``N``;
  ``N_total = N + N_merge``, set to 0 for merged halos; their main-progenitor columns zeroed;
  ``npstart*_merge = -999`` where nothing was received.
- abacusutils' own tests (``tests/test_data.py``: ``test_halos_clean``, ``test_passthrough``) check
  the same rules on the real Mini cleaning files (``tests/cleaning/Mini_N64_L32/z0.000/...``).

Layout written (abacusutils' first layout, as on NERSC)::

    root/<SimName>/halos/<zdir>   -> symlink to the read-only halo directory
    root/cleaning/<SimName>/<zdir>/cleaned_halo_info/cleaned_halo_info_XXX.asdf
    root/cleaning/<SimName>/<zdir>/cleaned_rvpid/cleaned_rvpid_XXX.asdf

abacusutils finds the cleaning files only relative to the halo directory: it maps
``.../<SimName>/halos/<zdir>`` to ``cleandir/<path of <SimName>/<zdir> below cleandir.parent>``,
so ``cleandir.parent`` must be an ancestor of the halo directory (else ``ValueError`` from
``Path.relative_to``), and ``cleandir`` must be a ``Path`` (a ``str`` raises ``AttributeError``).
Hence the symlinked halo directory: read ``result.halo_dir`` (or its slab files), with
``cleandir=result.cleandir`` or with no ``cleandir`` (found by searching upwards for ``cleaning/``).

What is simplified
------------------
- No merger tree: the merges are whatever the caller picks (default: see :func:`default_merges`),
  not halos that really were inside another halo's progenitor; chains are not allowed.
- Main-progenitor columns (``N_mainprog``, ``vcirc_max_L2com_mainprog``,
  ``sigmav3d_L2com_mainprog``, ``v_L2com_mainprog``) take the halo's own z=0 values for every
  previous slice (targets: summed ``N``), zero for merged halos; ``haloindex_mainprog`` is 0.
  ``TimeSliceRedshiftsPrev`` defaults to [0.5, 1.0] (the real Mini cleaning files have two previous
  slices; their values were not checked).
- No ``checksums.crc32`` files (abacusutils does not read them). ``npstart*_merge`` are written as
  int64 (abacusutils' ``clean_dt_progen``; the writer's latest version used int32).

Note for users of the cleaned catalog: abacusutils does not drop merged halos. They stay as rows
with ``N == 0`` (``N_total``); drop them with ``filter_func=lambda h: h['N'] > 0`` or afterwards.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import asdf
import numpy as np

HALOINDEX_STEP = 10**12  # haloindex = FullStepNumber * 1e12 + superslab * 1e9 + row
HALOINDEX_SLAB = 10**9
NO_MERGE_START = -999  # npstart{A,B}_merge of halos that received nothing
COMPRESSION = {"all_array_compression": "blsc", "compression_kwargs": {"typesize": "auto"}}


@dataclasses.dataclass(frozen=True)
class CleanedCatalog:
    """What :func:`write_cleaning` wrote. Rows are in catalog order (slab files in order)."""

    halo_dir: Path  # symlinked halo directory: the path to give CompaSOHaloCatalog
    cleandir: Path  # root/"cleaning": give as ``cleandir=`` (or let abacusutils find it)
    merges: dict[int, int]  # merged row -> target row
    n_per_slab: tuple[int, ...]
    N_raw: np.ndarray  # uncleaned N per row
    N_total: np.ndarray  # cleaned N per row: N + merged N for targets, 0 for merged halos

    @property
    def n_rows(self) -> int:
        return int(self.N_raw.size)

    @property
    def n_kept(self) -> int:
        """Halos left once merged ones (N == 0) are dropped."""
        return self.n_rows - len(self.merges)


def _read(path: Path, keys=None) -> tuple[dict, dict]:
    with asdf.open(path, lazy_load=True, memmap=False) as af:
        data = {k: np.asarray(v[:]) for k, v in af["data"].items() if keys is None or k in keys}
        return data, dict(af["header"])


def _slab_files(halo_dir: Path) -> list[Path]:
    files = sorted((halo_dir / "halo_info").glob("halo_info_*.asdf"))
    if not files:
        raise FileNotFoundError(f"no halo_info/halo_info_*.asdf under {halo_dir}")
    return files


def default_merges(halo_dir: Path) -> dict[int, int]:
    """Three merges: slab 0's two smallest halos into slab 0's largest, and slab 2's smallest
    into slab 1's largest (a cross-slab merge, which real cleaning also makes)."""
    Ns = [_read(f, ["N"])[0]["N"] for f in _slab_files(Path(halo_dir))]
    if len(Ns) < 3:
        raise ValueError("default_merges needs three slab files; pass merges=")
    off = np.concatenate([[0], np.cumsum([len(n) for n in Ns])])
    s0 = np.argsort(Ns[0], kind="stable")
    return {
        int(s0[0]): int(s0[-1]),
        int(s0[1]): int(s0[-1]),
        int(off[2] + np.argmin(Ns[2])): int(off[1] + np.argmax(Ns[1])),
    }


def write_cleaning(
    halo_dir: Path,
    root: Path,
    merges: Mapping[int, int] | None = None,
    *,
    prev_redshifts=(0.5, 1.0),
    rvpid: bool = True,
) -> CleanedCatalog:
    """Write cleaning files for the catalog ``halo_dir`` (``.../<SimName>/halos/<zdir>``) under
    ``root`` (a writable temporary directory), merging halo row ``k`` into row ``merges[k]``.

    Rows count across the slab files in order (the row order of a directory read). Merged halos
    get ``N_total = 0`` and ``is_merged_to`` = the target's ``haloindex``; each target gets
    ``N_merge`` = the merged halos' ``N`` and, with ``rvpid``, their subsample A/B particles in
    ``cleaned_rvpid_XXX.asdf`` (needed only for ``subsamples=...`` reads). Returns where things are.
    """
    halo_dir, root = Path(halo_dir).absolute(), Path(root).absolute()
    files = _slab_files(halo_dir)
    merges = dict(default_merges(halo_dir) if merges is None else merges)
    prev = [float(z) for z in prev_redshifts]
    if not prev:
        raise ValueError("prev_redshifts must name at least one previous time slice")

    cols = ["N", "npstartA", "npoutA", "npstartB", "npoutB", "vcirc_max_L2com",
            "sigmav3d_L2com", "v_L2com"]  # fmt: skip
    slabs = [_read(f, cols) for f in files]
    n_per = [len(d["N"]) for d, _ in slabs]
    n = sum(n_per)
    off = np.concatenate([[0], np.cumsum(n_per)]).astype(np.int64)
    slab_of = np.repeat(np.arange(len(files)), n_per)
    row_in = np.arange(n) - off[slab_of]
    superslab = np.array([int(f.stem.split("_")[-1]) for f in files])
    step = int(slabs[0][1]["FullStepNumber"])
    haloindex = step * HALOINDEX_STEP + superslab[slab_of] * HALOINDEX_SLAB + row_in
    haloindex = haloindex.astype(np.uint64)
    cat = {c: np.concatenate([d[c] for d, _ in slabs]) for c in cols}

    for src, dst in merges.items():
        if not (0 <= src < n and 0 <= dst < n) or src == dst:
            raise ValueError(f"bad merge {src} -> {dst} (rows 0..{n - 1})")
        if dst in merges:
            raise ValueError(f"merge target {dst} is itself merged away (no chains)")

    N = cat["N"].astype(np.int64)
    is_merged_to = np.full(n, -1, dtype=np.int64)
    N_merge = np.zeros(n, dtype=np.int64)
    sources: dict[int, list[int]] = {}
    for src, dst in sorted(merges.items()):
        is_merged_to[src] = int(haloindex[dst])
        N_merge[dst] += N[src]
        sources.setdefault(dst, []).append(src)
    N_total = N + N_merge
    merged = is_merged_to != -1
    N_total[merged] = 0

    # main progenitor columns (simplified: the halo itself at every previous slice)
    P = len(prev)
    N_mainprog = np.repeat(N_total[:, None], P, axis=1).astype(np.uint32)
    vmax = np.repeat(cat["vcirc_max_L2com"][:, None], P, axis=1).astype(np.float32)
    vrms = np.repeat(cat["sigmav3d_L2com"][:, None], P, axis=1).astype(np.float32)
    v_mp = cat["v_L2com"].astype(np.float32)
    for a in (vmax, vrms, v_mp):
        a[merged] = 0

    # merged particles, per target slab, in target order then source order (as the writer does)
    npstart = {AB: np.full(n, NO_MERGE_START, dtype=np.int64) for AB in "AB"}
    npout = {AB: np.zeros(n, dtype=np.uint32) for AB in "AB"}
    particles = [{} for _ in files]
    if rvpid:
        raw = {
            (kind, AB): [_read(halo_dir / f"halo_{kind}_{AB}" / f"halo_{kind}_{AB}_{s:03d}.asdf")[0]
                         for s in superslab]
            for kind in ("rv", "pid") for AB in "AB"
        }  # fmt: skip
    for i in range(len(files)):
        for AB in "AB":
            rv, pid, count = [], [], 0
            for dst in sorted(d for d in sources if slab_of[d] == i):
                npstart[AB][dst] = count
                for src in sources[dst]:
                    lo = int(cat[f"npstart{AB}"][src])
                    hi = lo + int(cat[f"npout{AB}"][src])
                    if rvpid:
                        rv.append(raw["rv", AB][slab_of[src]]["rvint"][lo:hi])
                        pid.append(raw["pid", AB][slab_of[src]]["packedpid"][lo:hi])
                    count += hi - lo
                npout[AB][dst] = count - npstart[AB][dst]
            if rvpid:
                particles[i][f"rvint_{AB}"] = np.ascontiguousarray(
                    np.concatenate(rv) if rv else np.zeros((0, 3), np.int32), dtype=np.int32
                )
                particles[i][f"packedpid_{AB}"] = np.ascontiguousarray(
                    np.concatenate(pid) if pid else np.zeros(0, np.uint64), dtype=np.uint64
                )

    sim = halo_dir.parent.parent.name
    zdir = halo_dir.name
    link = root / sim / "halos" / zdir
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(halo_dir, link, target_is_directory=True)
    cleandir = root / "cleaning"
    out = cleandir / sim / zdir
    (out / "cleaned_halo_info").mkdir(parents=True, exist_ok=True)
    if rvpid:
        (out / "cleaned_rvpid").mkdir(parents=True, exist_ok=True)

    for i, (s, (_, header)) in enumerate(zip(superslab, slabs, strict=True)):
        rows = slice(off[i], off[i + 1])
        header = dict(header, NumTimeSliceRedshiftsPrev=P, TimeSliceRedshiftsPrev=prev)
        data = {
            "is_merged_to": is_merged_to[rows],
            "haloindex": haloindex[rows],
            "N_total": N_total[rows].astype(np.uint32),
            "N_merge": N_merge[rows].astype(np.uint32),
            "N_mainprog": N_mainprog[rows],
            "vcirc_max_L2com_mainprog": vmax[rows],
            "sigmav3d_L2com_mainprog": vrms[rows],
            "haloindex_mainprog": np.zeros(n_per[i], dtype=np.int64),
            "v_L2com_mainprog": v_mp[rows],
            "npstartA_merge": npstart["A"][rows],
            "npoutA_merge": npout["A"][rows],
            "npstartB_merge": npstart["B"][rows],
            "npoutB_merge": npout["B"][rows],
        }
        data = {k: np.ascontiguousarray(v) for k, v in data.items()}
        path = out / "cleaned_halo_info" / f"cleaned_halo_info_{s:03d}.asdf"
        asdf.AsdfFile({"data": data, "header": header}).write_to(path, **COMPRESSION)
        if rvpid:
            path = out / "cleaned_rvpid" / f"cleaned_rvpid_{s:03d}.asdf"
            asdf.AsdfFile({"data": particles[i], "header": header}).write_to(path, **COMPRESSION)

    return CleanedCatalog(
        halo_dir=link,
        cleandir=cleandir,
        merges=merges,
        n_per_slab=tuple(n_per),
        N_raw=N.astype(np.uint32),
        N_total=N_total.astype(np.uint32),
    )


def write_with_redshift(halo_dir: Path, dest: Path, redshift: float) -> Path:
    """Copy the CompaSO catalog ``halo_dir`` to ``dest`` (a ``.../halos/zZ.ZZZ`` directory)
    with every slab header's ``Redshift`` set to ``redshift`` (as AbacusSummit's secondary
    outputs differ from their directory names); the data are the same. Returns ``dest``."""
    (dest / "halo_info").mkdir(parents=True, exist_ok=True)
    for path in _slab_files(Path(halo_dir)):
        data, header = _read(path)
        header["Redshift"] = redshift
        asdf.AsdfFile({"header": header, "data": data}).write_to(
            dest / "halo_info" / path.name, **COMPRESSION
        )
    return dest
