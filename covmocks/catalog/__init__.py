"""Catalog files: the HDF5 catalog (schema, writer, reader, publishing), the MPI-IO writer, HDF5
attributes, validation, and the per-box summary statistics."""
