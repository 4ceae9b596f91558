"""Spark fixtures: one local SparkSession per test process, a schema per build.

Spark starts in this process (pyspark + dbt-spark's session method) with the modest settings
of orchestration/spark.py (local[2], 2 GB driver, 4 shuffle partitions), in a warehouse folder
under pytest's temporary directory, and is stopped when the session ends. Without Java or
pyspark the tests are skipped, unless MH_REQUIRE_SPARK=1 (then they fail).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from orchestration.spark import spark_missing, stop_spark
from orchestration.warehouse import WarehouseConfig


@pytest.fixture(scope="session")
def spark_config(tmp_path_factory) -> Iterator[Callable[[], WarehouseConfig]]:
    """A factory of Spark warehouse configs, each in a fresh schema of one local warehouse."""
    reason = spark_missing()
    if reason:
        message = f"Spark cannot run here: {reason}"
        if os.environ.get("MH_REQUIRE_SPARK") == "1":
            pytest.fail(f"{message} (MH_REQUIRE_SPARK=1)", pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("spark")
    try:
        yield lambda: WarehouseConfig(
            target="spark", spark_warehouse=str(root), schema=f"mh_test_{uuid.uuid4().hex[:12]}"
        )
    finally:
        stop_spark()
