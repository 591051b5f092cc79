"""Foundations every layer may use: errors, units, the campaign directory's layout, limits,
provenance, logging. Imports nothing else of covmocks."""
