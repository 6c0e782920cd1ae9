"""Restore drills: restore for real, verify, measure RPO and RTO."""
