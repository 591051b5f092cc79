"""Clustering of one box: samples, ensemble thresholds and the gate that holds boxes for them,
k bins on the lattice, the power-spectrum estimator and the per-box measurement."""
