"""Retention: which restore points a tier's keep rules keep, and why."""
