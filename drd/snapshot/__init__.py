"""Encrypted, deduplicated filestore snapshots."""
