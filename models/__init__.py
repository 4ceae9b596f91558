"""The Meterhouse domain model in plain Python: no Dagster, no FastAPI, no SQL connections."""
