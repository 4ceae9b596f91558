"""Dagster definitions, grouped by integration (ingest, catalog, dbt)."""
