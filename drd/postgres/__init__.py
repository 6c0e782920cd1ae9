"""PostgreSQL adapter (psycopg 3): probes of server, recovery and archiving state."""
