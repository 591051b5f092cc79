"""Halo sources: the halo block model, the generic HDF5 and synthetic sources, the AbacusSummit
reader, and the checks every halo file passes. Masses Msun/h and lengths Mpc/h as stored."""
