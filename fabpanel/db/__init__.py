"""Persistence: SQLModel tables, async engine, migrations and the queries the services need."""
