"""The `meterhouse` command line: demo, run, catalog validate, generate."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _say(message: str) -> None:
    print(message, flush=True)


def _add_warehouse_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warehouse",
        default=os.environ.get("MH_DUCKDB_PATH", "warehouse/meterhouse.duckdb"),
        help="DuckDB file of the embedded warehouse (default: %(default)s)",
    )
    parser.add_argument(
        "--target",
        choices=["duckdb", "postgres", "spark"],
        default=os.environ.get("MH_TARGET", "duckdb"),
        help="warehouse target; postgres reads MH_PG_HOST/PORT/USER/PASSWORD/DATABASE, "
        "spark MH_SPARK_WAREHOUSE/MH_SPARK_MASTER (local Spark in this process)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterhouse",
        description="Warehouse-native usage metering: events in, exact meter usage out.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="generate sample data and run the whole pipeline on DuckDB",
        description="Generate a sample catalog and events, run the pipeline, print a summary.",
    )
    demo.add_argument("--events", type=int, default=1_000_000, help="events (default 1,000,000)")
    demo.add_argument("--out", default="demo_data", help="folder for sample data")
    demo.add_argument("--warehouse", default="warehouse/demo.duckdb", help="DuckDB file")

    run = commands.add_parser(
        "run", help="ingest what is new and rebuild (through Dagster, in process)",
        description="Load the catalog, ingest new landing files and build every model.",
    )
    run.add_argument("--catalog", required=True, help="catalog folder (one YAML per tenant env)")
    run.add_argument("--landing", default="", help="landing folder <tenant>/<env>/**/*")
    run.add_argument(
        "--events-table", default=os.environ.get("MH_EVENTS_TABLE", ""),
        help="also read events from this warehouse table (warehouse-native source)",
    )
    _add_warehouse_args(run)

    catalog = commands.add_parser("catalog", help="catalog tools")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")
    validate = catalog_commands.add_parser(
        "validate", help="check a catalog folder and list every problem with file and field"
    )
    validate.add_argument("directory", help="catalog folder")

    generate = commands.add_parser(
        "generate", help="write a synthetic catalog and landing files",
        description="Deterministic synthetic catalog and events (JSONL, CSV, Parquet).",
    )
    generate.add_argument("--out", default="demo_data", help="output folder")
    generate.add_argument("--events", type=int, default=1_000_000)
    generate.add_argument("--days", type=int, default=31)
    generate.add_argument("--seed", type=int, default=7)

    serve = commands.add_parser(
        "serve", help="the read API (Flexprice and Stripe compatible analytics)",
        description="Serve the read API over the warehouse; OpenAPI at /openapi.json, docs at "
                    "/docs. On DuckDB it reads a serving snapshot (published now if stale).",
    )
    _add_warehouse_args(serve)
    serve.add_argument("--host", default=os.environ.get("MH_API_HOST", "127.0.0.1"),
                       help="interface to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("MH_API_PORT", "8000")),
                       help="port (default: %(default)s)")
    serve.add_argument("--serving-dir", default=os.environ.get("MH_SERVING_DIR", ""),
                       help="DuckDB serving snapshots folder (default: <warehouse>.serving)")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "catalog" and args.catalog_command == "validate":
            from orchestration.catalog_tables import validate_catalog_command

            return validate_catalog_command(Path(args.directory))
        if args.command == "generate":
            return cmd_generate(args)
        if args.command == "serve":
            return cmd_serve(args)
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return EXIT_USAGE


def cmd_generate(args: argparse.Namespace) -> int:
    from orchestration.generate import generate_dataset

    started = time.monotonic()
    data = generate_dataset(Path(args.out), events=args.events, days=args.days, seed=args.seed)
    _say(
        f"wrote {data.events_written:,} events in {len(data.files)} files under "
        f"{data.landing_dir} and the catalog in {data.catalog_dir} "
        f"({time.monotonic() - started:.1f} s)"
    )
    return EXIT_OK


def run_pipeline(catalog_dir: Path, landing_dir: Path | None, target: str, duckdb_path: str,
                 events_table: str = "") -> bool:
    """Run the build_everything job in this process; print each step as it finishes."""
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.resources import MeterhouseResource

    if landing_dir is None and not events_table:
        raise SystemExit("error: give --landing DIR, --events-table NAME or both")
    for folder, what in ((catalog_dir, "catalog"), (landing_dir, "landing")):
        if folder is not None and not folder.is_dir():
            raise SystemExit(f"error: {what} folder {folder} does not exist")
    os.environ["MH_TARGET"] = target
    os.environ["MH_DUCKDB_PATH"] = str(Path(duckdb_path).resolve())
    resource = MeterhouseResource(
        catalog_dir=str(catalog_dir), landing_dir=str(landing_dir) if landing_dir else "",
        target=target, duckdb_path=str(Path(duckdb_path).resolve()), events_table=events_table,
    )
    job = build_definitions(resource).resolve_job_def("build_everything")
    started = time.monotonic()
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
    )
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            key = event.asset_key.to_user_string() if event.asset_key else "?"
            _say(f"  built {key}")
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            status = "passed" if data.passed else "FAILED"
            _say(f"  check {data.check_name} on {data.asset_key.to_user_string()}: {status}")
        elif event.event_type_value == "STEP_FAILURE":
            _say(f"  FAILED {event.step_key}: {event.event_specific_data.error.message.strip()}")
    _say(f"pipeline {'finished' if result.success else 'FAILED'} in "
         f"{time.monotonic() - started:.1f} s")
    return result.success


def cmd_run(args: argparse.Namespace) -> int:
    ok = run_pipeline(Path(args.catalog), Path(args.landing) if args.landing else None,
                      args.target, args.warehouse, args.events_table)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.generate import generate_dataset
    from orchestration.summary import print_summary
    from orchestration.warehouse import Warehouse, WarehouseConfig

    out = Path(args.out)
    _say(f"1/3 generating {args.events:,} sample events under {out}/ ...")
    started = time.monotonic()
    data = generate_dataset(out, events=args.events)
    _say(f"    {data.events_written:,} events in {len(data.files)} files "
         f"({time.monotonic() - started:.1f} s)")
    warehouse_path = Path(args.warehouse)
    if warehouse_path.exists():
        warehouse_path.unlink()  # the demo always starts from an empty warehouse
    _say(f"2/3 running the pipeline on DuckDB ({warehouse_path}) ...")
    if not run_pipeline(data.catalog_dir, data.landing_dir, "duckdb", str(warehouse_path)):
        return EXIT_FAILED
    _say("3/3 summary")
    with Warehouse(WarehouseConfig(target="duckdb", duckdb_path=str(warehouse_path))) as wh:
        print_summary(wh, data)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the read API with uvicorn until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.serving import publish_if_stale
    from api.settings import Settings

    if args.target == "spark":
        raise SystemExit("error: the read API serves DuckDB or PostgreSQL; on Spark, read the "
                         "marts with Spark SQL or a BI tool (README: Scale out on Spark)")
    settings = Settings.from_env(target=args.target, duckdb_path=args.warehouse)
    if args.serving_dir:
        settings = settings.model_copy(update={"serving_dir": args.serving_dir})
    if settings.warehouse.target == "duckdb":
        _say(publish_if_stale(settings.warehouse, settings.serving_dir))
        where = f"DuckDB {args.warehouse}"
    else:
        config = settings.warehouse
        where = f"PostgreSQL {config.pg_host}:{config.pg_port}/{config.pg_database}"
    _say(f"read API over {where} on http://{args.host}:{args.port} "
         f"(docs at /docs, OpenAPI at /openapi.json)")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
