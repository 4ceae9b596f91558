"""The Dagster code location of Meterhouse and the Python that writes into the warehouse."""
