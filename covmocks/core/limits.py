"""The values a campaign file is checked against, defined once, with no dependency.

The campaign loader validates a file against these without importing h5py, JAX or Parsl;
the halo sources, the box specification and the catalog writer import them from here too.
"""

# Halo source kinds; the first two read an input path, the synthetic one makes its halos.
SOURCE_KINDS = ("abacus", "hdf5", "synthetic")
PATH_SOURCES = ("abacus", "hdf5")

# Snapshot redshifts in [0, MAX_REDSHIFT]: at z = 20 the cosmic age (0.18 Gyr) is still
# above diffstar's first time step (0.01 Gyr) and the snapshot id (round(1000 z)) small.
MAX_REDSHIFT = 20.0

# Random-stream ids (campaign seed, realization, snapshot id) are folded into JAX keys as
# uint32 and seed NumPy streams: each in [0, 2**31), the campaign seed's range.
RANDOM_ID_LIMIT = 2**31

# Hosts per chunk: peak memory follows the chunk (about 5 GB at 65,536 hosts, field notes).
CHUNK_HOSTS = 65536

# Catalog compressions (HDF5 filters; "none" writes raw chunks).
COMPRESSIONS = ("gzip", "lzf", "none")

# Host mass cuts (log10 Msun, no h) a synthetic box takes: diffsky's host mass function is
# a fit that its tables keep monotonic only within about this range; the cut when none is
# given.
SYNTHETIC_MHOST_RANGE = (8.0, 16.0)
SYNTHETIC_MHOST_MIN = 11.0

# The completeness probe (covmocks.box.probe): the halos within PROBE_DEX (dex) below a box's
# host cut, subsampled to fraction min(1, PROBE_HOSTS / the box's hosts). A box has about one
# galaxy above its M* (SFR) limit per host and misses 0.3-0.5% there, so a box of more than
# PROBE_HOSTS hosts counts about 200 probe galaxies above it: the missing fraction at the
# limit to about 7% of itself, at a cost of about 2 x PROBE_HOSTS small halos per box.
PROBE_DEX = 0.5
PROBE_HOSTS = 50_000
