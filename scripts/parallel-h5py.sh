#!/usr/bin/env bash
# parallel-h5py.sh: a second virtual environment whose h5py writes with driver='mpio'
# (parallel HDF5), for `python -m covmocks.cli.generate_mpi` and its tests, on Debian.
#
# Usage: scripts/parallel-h5py.sh [VENV]
#
#   VENV  where to make it: the argument, else $COVMOCKS_MPIO_VENV, else .venv-mpio in the
#         repository root. The tests look for its python at $COVMOCKS_MPIO_PYTHON, default
#         <repo>/.venv-mpio/bin/python.
#
# Steps, each skipped when already done (a second run on a working venv takes seconds):
#   1. Debian's libhdf5-mpich-dev and mpich (parallel HDF5 1.10 over the system MPICH 4.0),
#      apt-get installed only when missing (needs root);
#   2. a venv from $COVMOCKS_MPIO_BASE_PYTHON (default: the base interpreter of `python3`);
#   3. mpi4py built from source against /usr/bin/mpicc;
#   4. h5py built from source with CC=/usr/bin/mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich
#      and --no-build-isolation;
#   5. `pip install -e <repo>` (covmocks and its other dependencies, NOT the `mpi` extra),
#      holding a lock on <repo>/pyproject.toml (.ci/run installs the main venv meanwhile);
#   6. a check: h5py.get_config().mpi, mpi4py on the system MPICH, no `mpich` wheel, and
#      two ranks of /usr/bin/mpiexec writing one file with driver='mpio'.
#
# Run the ranks with the matching launcher: /usr/bin/mpiexec -n 2 VENV/bin/python ...
#
# What to mind (Debian 12, system MPICH 4.0.2, HDF5 1.10.8):
#   - Never mix the `mpich` PyPI wheel (the main venv's `mpi` extra) with the system MPICH in
#     one process ("internal_Comm_dup before initializing"): this venv has no `mpich` wheel,
#     and its ranks must be launched by /usr/bin/mpiexec, not the main venv's mpiexec.
#   - The main venv's bin/ (mpicc, mpiexec of the wheel) can shadow /usr/bin on PATH: every
#     build step here runs with a clean PATH and absolute compiler paths.
#   - Without --no-build-isolation, h5py's build pins and compiles a private mpi4py, which
#     reached 21.7 GB of memory here and can take the machine down.
#   - --no-cache-dir for the two MPI builds: pip's wheel cache is keyed by the sdist, not by
#     CC or HDF5_MPI, so a cached serial h5py wheel could otherwise come back.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-${COVMOCKS_MPIO_VENV:-$REPO/.venv-mpio}}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
SYS_MPICC=/usr/bin/mpicc
MPIEXEC=/usr/bin/mpiexec
STAMP="$VENV/.covmocks-mpio"
STEP="start"
T0=$SECONDS

say() { echo "parallel-h5py: $*"; }
die() { echo "parallel-h5py: error: $*" >&2; exit 1; }
trap 'rc=$?; echo "parallel-h5py: error: step \"$STEP\" failed (exit $rc); see the output above" >&2' ERR

# Resolve the base interpreter before the PATH is cleaned (pyenv shims need the old PATH).
BASE_PYTHON="${COVMOCKS_MPIO_BASE_PYTHON:-$(python3 -c 'import sys; print(sys._base_executable)')}"
[ -x "$BASE_PYTHON" ] || die "no python interpreter at $BASE_PYTHON"

# Clean PATH: /usr/bin/mpicc, not a venv's; no MPI or compiler settings from outside.
export PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME CC MPICC HDF5_DIR HDF5_MPI HDF5_PKGCONFIG_NAME
PY="$VENV/bin/python"

# -- 1. Debian packages ------------------------------------------------------------------------
STEP="apt packages"
missing=()
for pkg in libhdf5-mpich-dev mpich pkgconf; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root or install them"
    say "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
[ -x "$SYS_MPICC" ] && [ -x "$MPIEXEC" ] || die "no $SYS_MPICC or $MPIEXEC after installing mpich"
pkg-config --exists hdf5-mpich || die "pkg-config does not know hdf5-mpich"

# -- 2. the venv -------------------------------------------------------------------------------
STEP="venv"
if [ ! -x "$PY" ] || ! "$PY" -c 'import sys' 2>/dev/null; then
    say "creating $VENV from $BASE_PYTHON"
    "$BASE_PYTHON" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
fi
pip() { "$PY" -m pip "$@"; }

# -- 3. mpi4py on the system MPICH -------------------------------------------------------------
STEP="mpi4py"
mpi4py_ok() {
    "$PY" - <<'EOF' 2>/dev/null
import mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
# The MPI library this process loaded: the system's, not a wheel's (mpi4py 4 keeps no mpicc).
libs = {line.split()[-1] for line in open("/proc/self/maps") if "/libmpi" in line}
assert libs and all(p.startswith(("/usr/lib/", "/lib/")) for p in libs), libs
assert "MPICH" in MPI.Get_library_version()
EOF
}
if ! mpi4py_ok; then
    say "building mpi4py against $SYS_MPICC (a few minutes)"
    pip install -q "setuptools>=77" wheel "cython>=3.0" "numpy>=2.0" pkgconfig
    MPICC="$SYS_MPICC" pip install -q --no-cache-dir --no-build-isolation --no-binary=mpi4py \
        --force-reinstall --no-deps "mpi4py>=4.0"
    mpi4py_ok || die "mpi4py was built but is not linked to the system MPICH ($SYS_MPICC)"
fi

# -- 4. h5py on parallel HDF5 ------------------------------------------------------------------
STEP="h5py"
h5py_ok() {
    "$PY" - <<'EOF' 2>/dev/null
import mpi4py
mpi4py.rc.initialize = False
import h5py
assert h5py.get_config().mpi
EOF
}
if ! h5py_ok; then
    say "building h5py against hdf5-mpich $(pkg-config --modversion hdf5-mpich) (a few minutes)"
    CC="$SYS_MPICC" HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-mpich \
        pip install -q --no-cache-dir --no-build-isolation --no-binary=h5py \
        --force-reinstall --no-deps "h5py>=3.10"
    h5py_ok || die "h5py was built but h5py.get_config().mpi is False"
fi

# -- 5. covmocks and its other dependencies ----------------------------------------------------
STEP="covmocks"
want_stamp="$REPO $(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want_stamp" ]; then
    say "pip install -e $REPO"
    # the lock .ci/run's editable install holds too (both write covmocks.egg-info into $REPO)
    flock "$REPO/pyproject.toml" "$PY" -m pip install -q -e "$REPO"
    # An upgrade of h5py or an `mpich` wheel pulled in would undo steps 3 and 4.
    h5py_ok || die "installing covmocks replaced the parallel h5py; pin h5py in pyproject.toml?"
    if "$PY" -c 'import importlib.metadata as m; m.distribution("mpich")' 2>/dev/null; then
        die "the mpich wheel got into $VENV; it must not be mixed with the system MPICH"
    fi
fi

# -- 6. a real parallel write ------------------------------------------------------------------
STEP="check"
check_dir="$(mktemp -d)"
trap 'rm -rf "$check_dir"' EXIT
# A script file, not stdin: mpiexec gives stdin to rank 0 only.
cat >"$check_dir/check.py" <<'EOF'
import sys

import h5py
from mpi4py import MPI

comm = MPI.COMM_WORLD
with h5py.File(sys.argv[1], "w", driver="mpio", comm=comm) as f:
    ds = f.create_dataset("rank", shape=(comm.size,), dtype="i4")
    with ds.collective:
        ds[comm.rank] = comm.rank
    import covmocks  # noqa: F401  (the editable install resolves)
if comm.rank == 0:
    with h5py.File(sys.argv[1], "r") as f:
        assert list(f["rank"][...]) == list(range(comm.size)), f["rank"][...]
EOF
timeout 120 "$MPIEXEC" -n 2 "$PY" "$check_dir/check.py" "$check_dir/check.hdf5" ||
    die "two ranks of $MPIEXEC could not write one file with driver='mpio'"
echo "$want_stamp" >"$STAMP"
say "ready: $PY (h5py $("$PY" -c 'import mpi4py; mpi4py.rc.initialize = False; import h5py; print(h5py.__version__, "on HDF5", h5py.version.hdf5_version)'), $((SECONDS - T0)) s)"
