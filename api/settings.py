"""The read API's one settings object: where the warehouse is and the limits it enforces."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from orchestration.warehouse import DEFAULT_DUCKDB_PATH, WarehouseConfig


class Settings(BaseModel):
    """Everything the API is configured with; built once and handed to `create_app`."""

    model_config = ConfigDict(frozen=True)

    warehouse: WarehouseConfig = WarehouseConfig()
    # DuckDB only: where `api.serving.publish_snapshot` writes the serving copies the API
    # reads ('' = next to the warehouse file, `<warehouse>.serving/`).
    serving_dir: str = ""
    # Largest number of window buckets one query may span (MINUTE: about 69 days).
    max_points: int = 100_000
    # Longest range any query may ask about.
    max_range_days: int = 3_660
    # Postgres connections kept open for requests.
    pg_pool_size: int = 8
    # DuckDB only: memory one API process may use for its read-only connections (cache
    # included; DuckDB's default is 80% of RAM, per process).
    duckdb_memory_limit: str = Field("1GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$")
    # DuckDB only: threads of each read-only connection. Requests are small and the server
    # runs one process per core, so one thread each; more makes processes fight for cores.
    duckdb_threads: int = Field(1, ge=1, le=64)

    @classmethod
    def from_env(cls, target: str | None = None, duckdb_path: str | None = None) -> Settings:
        """Settings from MH_* environment variables (the same ones the pipeline reads)."""
        env = os.environ
        return cls(
            warehouse=WarehouseConfig.from_env(
                target=target, duckdb_path=duckdb_path or env.get("MH_DUCKDB_PATH")
                or DEFAULT_DUCKDB_PATH
            ),
            serving_dir=env.get("MH_SERVING_DIR", ""),
            max_points=int(env.get("MH_API_MAX_POINTS", "100000")),
            max_range_days=int(env.get("MH_API_MAX_RANGE_DAYS", "3660")),
            pg_pool_size=int(env.get("MH_API_PG_POOL_SIZE", "8")),
            duckdb_memory_limit=env.get("MH_API_DUCKDB_MEMORY_LIMIT", "1GB"),
            duckdb_threads=env.get("MH_API_DUCKDB_THREADS", "1"),
        )
