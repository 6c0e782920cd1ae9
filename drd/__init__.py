"""drd: backup and disaster-recovery orchestration for PostgreSQL-backed applications."""

__version__ = "0.1.0"
