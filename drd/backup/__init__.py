"""Database protection services: pgBackRest backups and cluster setup for a workload."""
