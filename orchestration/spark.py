"""The Spark target: one local (or configured) SparkSession shared by Python and dbt-spark.

dbt-spark's `session` method runs every statement through `SparkSession.builder
.getOrCreate()` in this process, so the session that `Warehouse` writes the raw and catalog
tables with is the one dbt builds the models in. `spark_conf` is the single source of its
settings; `dbt_project/profiles.yml` (target `spark`) sets the same ones from the environment
that `WarehouseConfig.dbt_env` exports, so whichever side starts the session first, it is the
same session.

A JVM holds one session: its warehouse folder and metastore are fixed when it starts, so one
process works with one Spark warehouse (tests separate themselves by schema). The metastore is
an embedded Derby database inside the warehouse folder (never in the working directory).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

DEFAULT_SPARK_WAREHOUSE = "warehouse/spark"


class SparkUnavailable(RuntimeError):
    """pyspark or a Java runtime is missing."""


def spark_missing() -> str | None:
    """Why Spark cannot start here (None when pyspark and java are both present)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install -r requirements.lock)"
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        return "no Java runtime (java on PATH or JAVA_HOME); Spark needs Java 17 or later"
    return None


def spark_conf(warehouse_dir: str | Path, master: str | None = None) -> dict[str, str]:
    """Settings of the session: modest local resources, UTC, exact decimals, no UI."""
    root = Path(warehouse_dir).resolve()
    env = os.environ
    return {
        "spark.master": master or env.get("MH_SPARK_MASTER", "local[2]"),
        "spark.app.name": "meterhouse",
        "spark.driver.memory": env.get("MH_SPARK_DRIVER_MEMORY", "2g"),
        "spark.sql.shuffle.partitions": env.get("MH_SPARK_SHUFFLE_PARTITIONS", "4"),
        # Spark broadcasts tables it estimates below this from their Parquet size; the
        # calendar's hashed copy can be many times that and ran out of the 2 GB driver
        # (default 10 MB); larger tables are shuffled and sort-merged instead
        "spark.sql.autoBroadcastJoinThreshold": "2MB",
        "spark.sql.warehouse.dir": str(root),
        "spark.hadoop.javax.jdo.option.ConnectionURL":
            f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root} -Duser.timezone=UTC",
        "spark.sql.session.timeZone": "UTC",
        # decimal(38, 12) × decimal(38, 12) keeps scale 24 (bounded to 38 digits) instead of
        # silently dropping to scale 6: the macros split products like on DuckDB
        "spark.sql.decimalOperations.allowPrecisionLoss": "false",
        "spark.sql.sources.default": "parquet",
        "spark.sql.legacy.createHiveTableByDefault": "false",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }


_session: Any = None


def spark_session(warehouse_dir: str | Path) -> Any:
    """The process's SparkSession, started with `spark_conf` on first use."""
    global _session
    reason = spark_missing()
    if reason:
        raise SparkUnavailable(reason)
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        _session = active
        return active
    conf = spark_conf(warehouse_dir)
    Path(conf["spark.sql.warehouse.dir"]).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in conf.items():
        builder = builder.config(key, value)
    _session = builder.getOrCreate()
    _session.sparkContext.setLogLevel("ERROR")
    # a stage whose generated Java passes 64 KB runs interpreted: say nothing about it
    jvm = _session.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.catalyst.expressions.codegen.CodeGenerator",
        jvm.org.apache.logging.log4j.Level.OFF)
    return _session


def stop_spark() -> None:
    """Stop the session (the JVM exits with this process)."""
    global _session
    from pyspark.sql import SparkSession

    session = _session or SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    _session = None


# -- what Warehouse needs on Spark ----------------------------------------------------------------
_TYPES = [  # portable DDL and casts -> Spark SQL types
    (re.compile(r"\btimestamptz\b", re.I), "timestamp"),
    (re.compile(r"\bvarchar\b", re.I), "string"),
    (re.compile(r"\btext\b", re.I), "string"),
]


def spark_sql(sql: str) -> str:
    """Our portable SQL in Spark's dialect: "quoted" identifiers in backticks, varchar and
    timestamptz as string and timestamp (outside '...' literals), parquet tables."""
    parts = re.split(r"('(?:[^']|'')*')", sql)
    for index in range(0, len(parts), 2):
        part = parts[index].replace('"', "`")
        for pattern, replacement in _TYPES:
            part = pattern.sub(replacement, part)
        parts[index] = part
    text = "".join(parts)
    if re.match(r"\s*create\s+table\b", text, re.I) and not re.search(r"\busing\s+\w+\s*$", text):
        text = text.rstrip() + " using parquet"
    return text


class SparkTables:
    """The operations of `orchestration.warehouse.Warehouse` on a SparkSession.

    Spark tables here are plain Parquet tables: no transactions (a write is visible when it
    is done), and replacing a table's content is an `insert overwrite`.
    """

    def __init__(self, session: Any, schema: str):
        self.session = session
        self.schema = schema
        session.sql(f"create database if not exists `{schema}`")

    def sql(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.session.sql(spark_sql(sql), args=list(params) if params else None)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.sql(sql, params)

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        return self.sql(sql, params).toArrow()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        data = self.query_arrow(sql, params)
        columns = [column.to_pylist() for column in data.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        data = self.query_arrow(sql, params)
        return data.to_pylist()

    def table_exists(self, name: str, schema: str | None = None) -> bool:
        return bool(self.session.catalog.tableExists(f"`{schema or self.schema}`.`{name}`"))

    def columns(self, name: str, schema: str | None = None) -> list[tuple[str, str]]:
        """(column name, Spark type) of a table in order; [] when it does not exist."""
        if not self.table_exists(name, schema):
            return []
        fields = self.session.table(f"`{schema or self.schema}`.`{name}`").schema.fields
        return [(f.name, f.dataType.simpleString()) for f in fields]

    def _view(self, data: pa.Table) -> str:
        frame = self.session.createDataFrame(data)
        frame.createOrReplaceTempView("_mh_rows")
        return ", ".join(f"`{c}`" for c in data.column_names)

    def append_arrow(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        cols = self._view(data)
        self.session.sql(f"insert into {spark_sql(table)} ({cols}) select {cols} from _mh_rows")

    def replace_arrow(self, table: str, data: pa.Table, ddl: str) -> None:
        self.execute(f"create table if not exists {table} ({ddl})")
        if data.num_rows == 0:
            self.session.sql(f"truncate table {spark_sql(table)}")
            return
        cols = self._view(data)
        self.session.sql(
            f"insert overwrite table {spark_sql(table)} ({cols}) select {cols} from _mh_rows")
