"""Releasing a campaign version: verify, manifest, data card, read-only, plan to tape."""
