"""The catalog (meters, prices, customers...) as a Dagster asset."""
