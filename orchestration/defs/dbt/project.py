"""The dbt project: where it is, how to invoke it in process, and its Dagster handle."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from orchestration.warehouse import WarehouseConfig

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"


class DbtBuildFailed(RuntimeError):
    """dbt reported an error or a failing test."""


@dataclass(frozen=True)
class DbtRun:
    success: bool
    results: list[tuple[str, str, str]]  # (node, status, message)

    def failures(self) -> list[tuple[str, str, str]]:
        return [r for r in self.results if r[1] in ("error", "fail", "runtime error")]


@cache
def dbt_project():
    """The DbtProject handle used by dagster-dbt (built once)."""
    from dagster_dbt import DbtProject

    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    project.prepare_if_dev()
    return project


def ensure_manifest() -> Path:
    """The project's manifest.json, parsed now if it is missing (no warehouse needed)."""
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    if not manifest.exists() or _project_changed_since(manifest.stat().st_mtime):
        import tempfile

        from dbt.cli.main import dbtRunner

        os.environ.setdefault("DO_NOT_TRACK", "1")
        manifest.parent.mkdir(parents=True, exist_ok=True)
        # Parse into a folder of our own, then move the manifest in atomically: several
        # processes (test workers, Dagster) may load the definitions at once.
        with tempfile.TemporaryDirectory(dir=manifest.parent) as scratch:
            result = dbtRunner().invoke(
                ["parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
                 str(DBT_PROJECT_DIR), "--target-path", scratch, "--log-path", scratch,
                 "--quiet"]
            )
            if not result.success:
                raise DbtBuildFailed(f"dbt parse failed: {result.exception}")
            os.replace(Path(scratch) / "manifest.json", manifest)
    return manifest


def _project_changed_since(mtime: float) -> bool:
    sources = [DBT_PROJECT_DIR / "dbt_project.yml", DBT_PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests", "seeds"):
        sources += [p for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file()]
    return any(p.stat().st_mtime > mtime for p in sources if p.exists())


def dbt_environment(config: WarehouseConfig) -> dict[str, str]:
    """Environment for a dbt invocation against `config` (telemetry off)."""
    return {**config.dbt_env(), "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def target_path_for(config: WarehouseConfig) -> Path:
    """A dbt target folder per warehouse, so builds of different warehouses never collide."""
    if config.target == "duckdb":
        key = Path(config.duckdb_path).resolve().as_posix().replace("/", "_").strip("_")
    elif config.target == "spark":
        where = Path(config.spark_warehouse).resolve().as_posix().replace("/", "_").strip("_")
        key = f"spark_{where}_{config.schema_name}"
    else:
        key = f"pg_{config.pg_host}_{config.pg_port}_{config.pg_database}_{config.schema_name}"
    return DBT_PROJECT_DIR / "target" / "runs" / key


def run_dbt(
    args: Sequence[str],
    config: WarehouseConfig,
    dbt_vars: dict | None = None,
    raise_on_failure: bool = True,
) -> DbtRun:
    """Invoke dbt in this process (no interpreter start-up) against the configured target."""
    environment = dbt_environment(config)
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)  # dbt reads the profile's connection from here
    try:
        return _invoke_dbt(args, config, dbt_vars, raise_on_failure)
    finally:
        for key, value in saved.items():  # no MH_* leaks into later work in this process
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _invoke_dbt(args: Sequence[str], config: WarehouseConfig, dbt_vars: dict | None,
                raise_on_failure: bool) -> DbtRun:
    import json

    from dbt.cli.main import dbtRunner

    target_path = target_path_for(config)
    full_args = [
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target",
        config.target,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
        "--quiet",
    ]
    if dbt_vars:
        full_args += ["--vars", json.dumps(dbt_vars)]
    result = dbtRunner().invoke(full_args)
    rows: list[tuple[str, str, str]] = []
    if result.result is not None and hasattr(result.result, "results"):
        for r in result.result.results:
            rows.append((r.node.unique_id, str(r.status), r.message or ""))
    run = DbtRun(success=bool(result.success), results=rows)
    if raise_on_failure and not run.success:
        detail = "; ".join(f"{n}: {m}" for n, _, m in run.failures()) or str(result.exception)
        raise DbtBuildFailed(f"dbt {' '.join(args)} failed: {detail}")
    return run
