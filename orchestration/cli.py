"""The `meterhouse` command line: demo, run, query, serve, catalog validate, generate, bench.

Every command has `--help` with examples. Output is for people on a terminal (colour,
progress bars redrawn in place) and for logs and scripts elsewhere (no colour, one progress
line per tenth of the work). Errors say what went wrong and how to fix it, on stderr, and the
exit code tells scripts what kind of failure it was (EXIT_CODES, also in `meterhouse --help`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import sys
import time
from collections import deque
from pathlib import Path

from orchestration.terminal import Terminal

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the work ran and failed: a pipeline step or asset check, or catalog problems",
    EXIT_USAGE: "bad arguments (unknown option, malformed date, ambiguous customer, ...)",
    EXIT_NOT_FOUND: "something named does not exist: folder, warehouse, customer or meter",
    EXIT_UNAVAILABLE: "the warehouse is busy (a build holds the DuckDB file) or unreachable; "
                      "retry",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

ENVIRONMENT_HELP = """\
environment:
  MH_TARGET                    duckdb (default) or postgres
  MH_DUCKDB_PATH               DuckDB file (default warehouse/meterhouse.duckdb)
  MH_PG_HOST/PORT/USER/PASSWORD/DATABASE, MH_SCHEMA   PostgreSQL connection and schema
  NO_COLOR / FORCE_COLOR       never / always use colour (default: only on a terminal)
  full list: README.md, "Configuration"
"""


class CliError(Exception):
    """A failure the user can act on: what happened, how to fix it, the exit code."""

    def __init__(self, message: str, fix: str = "", exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.exit_code = exit_code


def _exit_codes_help() -> str:
    lines = [f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES.items()]
    return "exit codes:\n" + "\n".join(lines) + "\n"


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _command(commands, name: str, help_text: str, description: str, examples: str = ""):
    epilog = f"examples:\n{examples}" if examples else None
    return commands.add_parser(name, help=help_text, description=description, epilog=epilog,
                               formatter_class=_Formatter)


def _add_warehouse_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warehouse", metavar="FILE",
        default=os.environ.get("MH_DUCKDB_PATH", "warehouse/meterhouse.duckdb"),
        help="DuckDB file of the embedded warehouse (default: %(default)s; env MH_DUCKDB_PATH)",
    )
    parser.add_argument(
        "--target", choices=["duckdb", "postgres", "spark"],
        default=os.environ.get("MH_TARGET", "duckdb"),
        help="warehouse target (default: %(default)s; env MH_TARGET); postgres reads "
             "MH_PG_HOST/PORT/USER/PASSWORD/DATABASE, spark MH_SPARK_WAREHOUSE and "
             "MH_SPARK_MASTER (local Spark in this process; run only)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meterhouse",
        description="Warehouse-native usage metering: events in, exact meter usage out.\n"
                    "Start with `meterhouse demo`, then `meterhouse serve` and open "
                    "http://127.0.0.1:8000/dashboard.",
        epilog=_exit_codes_help() + "\n" + ENVIRONMENT_HELP,
        formatter_class=_Formatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _command(
        commands, "demo", "generate sample data and run the whole pipeline on DuckDB",
        "Generate a sample catalog and events, run the pipeline on a fresh DuckDB warehouse "
        "and print\na summary with where to look next. Deletes the --warehouse file first.",
        "  meterhouse demo\n  meterhouse demo --events 100000 --warehouse /tmp/demo.duckdb\n")
    demo.add_argument("--events", type=int, default=1_000_000, metavar="N",
                      help="number of events (default 1,000,000)")
    demo.add_argument("--out", default="demo_data", metavar="DIR",
                      help="folder for the sample catalog and landing files (default %(default)s)")
    demo.add_argument("--warehouse", default="warehouse/demo.duckdb", metavar="FILE",
                      help="DuckDB file to build (default %(default)s)")

    run = _command(
        commands, "run", "ingest what is new and rebuild (through Dagster, in process)",
        "Load the catalog, ingest new landing files (and/or new rows of an events table), "
        "build every\ndbt model and run the asset checks. Files already ingested are skipped, "
        "so re-running is safe.\nLanding layout: DIR/<tenant_id>/<environment_id>/**/"
        "*.jsonl|*.csv|*.parquet",
        "  meterhouse run --catalog demo_data/catalog --landing demo_data/landing\n"
        "  meterhouse run --catalog catalog/ --events-table raw.usage_events --target postgres\n")
    run.add_argument("--catalog", required=True, metavar="DIR",
                     help="catalog folder: one YAML file per tenant environment")
    run.add_argument("--landing", default="", metavar="DIR",
                     help="landing folder <tenant>/<environment>/**/*.jsonl|csv|parquet")
    run.add_argument(
        "--events-table", default=os.environ.get("MH_EVENTS_TABLE", ""), metavar="NAME",
        help="also read events from this warehouse table (env MH_EVENTS_TABLE)",
    )
    _add_warehouse_args(run)
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also show dbt's log and every passed check")

    query = _command(
        commands, "query", "a customer's meter usage, from the terminal",
        "Usage of one customer's meters over a range, with points per window, computed by the "
        "same code\nand tables as POST /v1/meter-usage/analytics. Times are read and shown in "
        "the customer's\ntimezone unless --timezone is given. The tenant environment is found "
        "from the customer.",
        "  meterhouse query --customer cust_123\n"
        "  meterhouse query --customer cust_123 --meter mtr_api_calls --from 2026-10-01 "
        "--to 2026-11-01 --window DAY\n"
        "  meterhouse query --customer cust_123 --window HOUR --timezone UTC --format csv "
        "> usage.csv\n")
    query.add_argument("--customer", required=True, metavar="EXTERNAL_ID",
                       help="the customer's external_id (as in events)")
    query.add_argument("--meter", action="append", default=[], metavar="ID",
                       help="a meter id; repeat or separate with commas (default: every meter)")
    query.add_argument("--from", dest="start", default="", metavar="WHEN",
                       help="start, included: 2026-10-01, 2026-10-01T09:00 (local) or an RFC 3339 "
                            "instant (default: 30 days before --to)")
    query.add_argument("--to", dest="end", default="", metavar="WHEN",
                       help="end, excluded (default: the next midnight)")
    query.add_argument("--window", metavar="SIZE", default=None,
                       help="MINUTE, 15MIN, 30MIN, HOUR, 3HOUR, 6HOUR, 12HOUR, DAY, WEEK or "
                            "MONTH (default: totals only)")
    query.add_argument("--timezone", metavar="TZ", default=None,
                       help="IANA timezone of the windows and of local times (default: the "
                            "customer's)")
    query.add_argument("--tenant", default=None, help="tenant_id, when the customer id is in "
                       "several tenants")
    query.add_argument("--environment", default=None, help="environment_id, likewise")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table",
                       help="table for people (default), csv or json (the API's shapes)")
    _add_warehouse_args(query)

    catalog = _command(commands, "catalog", "catalog tools",
                       "Tools for catalog folders (one YAML file per tenant environment).",
                       "  meterhouse catalog validate demo_data/catalog\n")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")
    validate = _command(
        catalog_commands, "validate",
        "check a catalog folder and list every problem with file and field",
        "Validate every YAML file of a catalog folder (or one file): meters, features, prices, "
        "plans,\ncustomers, subscriptions, API keys. Prints a summary, or every problem with "
        "its file and\nfield and exits with 1.",
        "  meterhouse catalog validate demo_data/catalog\n")
    validate.add_argument("directory", metavar="DIR", help="catalog folder or YAML file")

    generate = _command(
        commands, "generate", "write a synthetic catalog and landing files",
        "Deterministic synthetic catalog and events (JSON Lines, CSV, Parquet), with "
        "duplicates,\nre-sent ids and malformed lines, for demos, tests and the benchmark.",
        "  meterhouse generate --out /tmp/data --events 100000 --days 7\n")
    generate.add_argument("--out", default="demo_data", metavar="DIR",
                          help="output folder (default %(default)s)")
    generate.add_argument("--events", type=int, default=1_000_000, metavar="N",
                          help="number of events (default 1,000,000)")
    generate.add_argument("--days", type=int, default=31, metavar="N",
                          help="days the events span (default %(default)s)")
    generate.add_argument("--seed", type=int, default=7, metavar="N",
                          help="random seed; the same seed gives the same files (default 7)")

    serve = _command(
        commands, "serve", "the read API (Flexprice and Stripe compatible) and the dashboard",
        "Serve the read API over the warehouse: OpenAPI at /openapi.json, docs at /docs, the "
        "usage\ndashboard at /dashboard. On DuckDB it reads a serving snapshot (published now "
        "if stale), so\n`meterhouse run` can build while it serves.",
        "  meterhouse serve --warehouse warehouse/demo.duckdb\n"
        "  MH_PG_HOST=db meterhouse serve --target postgres --host 0.0.0.0 --port 8080\n")
    _add_warehouse_args(serve)
    serve.add_argument("--host", default=os.environ.get("MH_API_HOST", "127.0.0.1"),
                       help="interface to listen on (default: %(default)s; env MH_API_HOST)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("MH_API_PORT", "8000")),
                       help="port (default: %(default)s; env MH_API_PORT)")
    serve.add_argument("--workers", type=int,
                       default=int(os.environ.get("MH_API_WORKERS", "1")),
                       help="server processes (default: %(default)s; env MH_API_WORKERS); each "
                            "reads the same snapshot or database, so on N cores up to N "
                            "answer requests at once")
    serve.add_argument("--serving-dir", default=os.environ.get("MH_SERVING_DIR", ""),
                       metavar="DIR",
                       help="DuckDB serving snapshots folder (default: <warehouse>.serving; "
                            "env MH_SERVING_DIR)")

    soak = _command(
        commands, "soak", "exactness under scale: pipeline, late events, rebuild, invariants",
        "Generate a workload, run the pipeline, add 1% late events and run again (a batch "
        "run), rebuild\nin full, and check the reconciliation invariants after each step "
        "(orchestration/soak.py).\nExit 0 when every invariant held, 1 otherwise.",
        "  meterhouse soak                      # 10 million events (make soak)\n"
        "  meterhouse soak --events 200000 --no-rebuild\n")
    soak.add_argument("--events", type=int, default=10_000_000, metavar="N",
                      help="number of events (default 10,000,000)")
    soak.add_argument("--work-dir", default="bench/work-soak", metavar="DIR",
                      help="folder for the data and the warehouse, emptied first "
                           "(default %(default)s)")
    soak.add_argument("--target", choices=["duckdb", "postgres"], default="duckdb",
                      help="warehouse target (default %(default)s)")
    soak.add_argument("--no-rebuild", action="store_true",
                      help="skip the full rebuild at the end")

    bench = _command(
        commands, "bench", "the benchmark (bench/README.md); options go to bench.run",
        "Run the benchmark from the repository root; every argument after `bench` is passed "
        "to\n`python -m bench.run` (see `meterhouse bench --help` there, or bench/README.md).",
        "  meterhouse bench --events 1000000\n")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="ARGS",
                       help="arguments of bench.run")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    terminal = Terminal()
    handlers = {"demo": cmd_demo, "run": cmd_run, "query": cmd_query, "generate": cmd_generate,
                "serve": cmd_serve, "bench": cmd_bench, "catalog": cmd_catalog,
                "soak": cmd_soak}
    if args.command not in handlers:
        parser.print_help()
        return EXIT_USAGE
    try:
        return handlers[args.command](args, terminal)
    except KeyboardInterrupt:
        terminal.error("interrupted")
        return EXIT_INTERRUPTED
    except CliError as exc:
        terminal.error(exc.message, exc.fix)
        return exc.exit_code
    except Exception as exc:  # engine errors worth a plain message rather than a traceback
        known = _known_error(exc)
        if known is None:
            raise
        terminal.error(known.message, known.fix)
        return known.exit_code


def _known_error(exc: Exception) -> CliError | None:
    """Warehouse errors people meet in practice, with their fix."""
    from orchestration.query import QueryError

    if isinstance(exc, QueryError):
        return CliError(exc.message, exc.fix, exc.exit_code)
    try:
        import duckdb

        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            return CliError(f"the DuckDB warehouse is in use by another process ({exc})",
                            "wait for the running build to finish, or stop `dagster dev` / "
                            "`meterhouse run` using the same file", EXIT_UNAVAILABLE)
    except ImportError:  # pragma: no cover
        pass
    try:
        import psycopg2

        if isinstance(exc, psycopg2.OperationalError):
            return CliError(f"cannot reach PostgreSQL: {str(exc).strip()}",
                            "start the server or set MH_PG_HOST, MH_PG_PORT, MH_PG_USER, "
                            "MH_PG_PASSWORD and MH_PG_DATABASE", EXIT_UNAVAILABLE)
    except ImportError:  # pragma: no cover
        pass
    return None


# -- commands ----------------------------------------------------------------------------------
def cmd_catalog(args: argparse.Namespace, terminal: Terminal) -> int:
    if args.catalog_command != "validate":
        raise CliError("meterhouse catalog needs a subcommand",
                       "meterhouse catalog validate DIR (see meterhouse catalog --help)")
    from orchestration.catalog_tables import validate_catalog_command

    path = Path(args.directory)
    if not path.exists():
        raise CliError(f"catalog folder {path} does not exist",
                       "give the folder holding one YAML file per tenant environment "
                       "(e.g. demo_data/catalog after `meterhouse generate`)", EXIT_NOT_FOUND)
    return validate_catalog_command(path)


def cmd_generate(args: argparse.Namespace, terminal: Terminal) -> int:
    if args.events < 1 or args.days < 1:
        raise CliError("--events and --days must be at least 1", "e.g. --events 100000 --days 7")
    data = _generate_with_progress(terminal, Path(args.out), args.events, days=args.days,
                                   seed=args.seed)
    terminal.ok(f"wrote {data.events_written:,} events in {len(data.files)} files under "
                f"{data.landing_dir} and the catalog in {data.catalog_dir}")
    terminal.say(f"next: meterhouse run --catalog {data.catalog_dir} --landing {data.landing_dir}")
    return EXIT_OK


def _generate_with_progress(terminal: Terminal, out: Path, events: int, **options):
    from orchestration.generate import generate_dataset

    bar = terminal.progress(events, "generating", "events")
    data = generate_dataset(out, events=events, progress=lambda done, total: bar.update(done),
                            **options)
    bar.finish(f"{data.events_written:,} events in {len(data.files)} files")
    return data


class _ProgressHandler(logging.Handler):
    """Turns the Dagster events of a run into progress lines, as they happen."""

    def __init__(self, terminal: Terminal, total_assets: int, verbose: bool = False):
        super().__init__(logging.DEBUG)
        self.terminal = terminal
        self.total = total_assets
        self.verbose = verbose
        self.built = 0
        self.passed_checks = 0
        self.started = time.monotonic()
        self.failed_checks: list[str] = []
        self.files_seen = 0
        self.live_line = False

    def _end_live_line(self) -> None:
        if self.live_line:
            print("\r\x1b[K", end="", file=self.terminal.out, flush=True)
            self.live_line = False

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        elapsed = f"{time.monotonic() - self.started:6.1f}s"
        t = self.terminal
        if event is None:
            message = meta.get("orig_message", "")
            per_file = message.endswith(("bytes read", "skipped"))
            landing_total = message.startswith("ingest:") and "skipped)" in message
            if per_file:
                self.files_seen += 1
            if landing_total or (per_file and self.verbose):
                self._end_live_line()
                t.say(t.style(f"  {elapsed}   {message}", "dim"))
            elif per_file and t.colour:  # on a terminal: one line redrawn per file
                name = message.split(":", 1)[0]
                print(f"\r  {elapsed}   ingesting file {self.files_seen:,}: {name}"[:160]
                      + "\x1b[K", end="", file=t.out, flush=True)
                self.live_line = True
            return
        kind = event.event_type_value
        self._end_live_line()
        if kind == "STEP_START":
            t.say(t.style(f"  {elapsed} ▶ {event.step_key}", "cyan"))
        elif kind == "ASSET_MATERIALIZATION":
            self.built += 1
            key = event.asset_key.to_user_string() if event.asset_key else "?"
            t.say(f"  {elapsed}   [{self.built:>3}/{self.total}] built {key}")
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            name = f"{data.check_name} on {data.asset_key.to_user_string()}"
            if data.passed:
                self.passed_checks += 1
                if self.verbose:
                    t.say(f"  {elapsed}   check {name}: " + t.style("passed", "green"))
            else:
                self.failed_checks.append(name)
                t.say(f"  {elapsed}   check {name}: " + t.style("FAILED", "red", "bold"))
        elif kind == "STEP_FAILURE":
            error = event.event_specific_data.error
            message = failure_message(error) if error else "failed"
            t.say(t.style(f"  {elapsed} ✗ {event.step_key} FAILED: {message}", "red"))


def failure_message(error) -> str:
    """What went wrong in a failed step, for people: the error Dagster wrapped in "Error
    occurred while executing op ..." (a catalog problem names its file and field, an
    unreachable warehouse its host and port), without the exception's class name."""
    while error.cls_name and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return re.sub(r"^[\w.]+: ", "", error.message.strip())


class _TailBuffer(io.TextIOBase):
    """Keeps the last lines written (dbt's own log), to show them only when a step fails."""

    def __init__(self, lines: int = 60):
        self.lines: deque[str] = deque(maxlen=lines)
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *complete, self._partial = (self._partial + text).split("\n")
        self.lines.extend(complete)
        return len(text)


def run_pipeline(catalog_dir: Path, landing_dir: Path | None, target: str, duckdb_path: str,
                 events_table: str = "", terminal: Terminal | None = None,
                 verbose: bool = False) -> bool:
    """Run the build_everything job in this process, printing each step as it happens.

    dbt's own log is shown with `verbose`, else only its last lines when the run fails. The
    MH_* variables the job sets for dbt are restored afterwards, so nothing later in this
    process (another run on another target, a server it starts) inherits them."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("MH_")}
    try:
        return _run_pipeline(catalog_dir, landing_dir, target, duckdb_path, events_table,
                             terminal, verbose)
    finally:
        for key in [key for key in os.environ if key.startswith("MH_")]:
            if key not in saved:
                del os.environ[key]
        os.environ.update(saved)


def _run_pipeline(catalog_dir: Path, landing_dir: Path | None, target: str, duckdb_path: str,
                  events_table: str, terminal: Terminal | None, verbose: bool) -> bool:
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.resources import MeterhouseResource

    terminal = terminal or Terminal()
    if landing_dir is None and not events_table:
        raise CliError("nothing to ingest", "give --landing DIR, --events-table NAME or both")
    for folder, what in ((catalog_dir, "catalog"), (landing_dir, "landing")):
        if folder is not None and not folder.is_dir():
            raise CliError(f"{what} folder {folder} does not exist",
                           f"check the path, or create sample data with `meterhouse generate` "
                           f"(writes demo_data/{what})", EXIT_NOT_FOUND)
    os.environ["MH_TARGET"] = target
    os.environ["MH_DUCKDB_PATH"] = str(Path(duckdb_path).resolve())
    if target == "duckdb":
        Path(duckdb_path).resolve().parent.mkdir(parents=True, exist_ok=True)
    resource = MeterhouseResource(
        catalog_dir=str(catalog_dir), landing_dir=str(landing_dir) if landing_dir else "",
        target=target, duckdb_path=str(Path(duckdb_path).resolve()), events_table=events_table,
    )
    definitions = build_definitions(resource)
    job = definitions.resolve_job_def("build_everything")
    total = len(definitions.resolve_asset_graph().get_all_asset_keys())
    handler = _ProgressHandler(terminal, total, verbose)

    @dg.logger
    def progress_logger(_init_context):
        logger = logging.Logger("meterhouse.progress", logging.DEBUG)
        logger.addHandler(handler)
        return logger

    job = job.with_logger_defs({"progress": progress_logger})
    dbt_log = _TailBuffer()
    with contextlib.redirect_stdout(sys.stdout if verbose else dbt_log):
        result = job.execute_in_process(
            # with DAGSTER_HOME set, runs are recorded where `dagster dev` shows them
            instance=(dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME")
                      else dg.DagsterInstance.ephemeral()),
            raise_on_error=False,
            run_config={"loggers": {"progress": {}}},
        )
    elapsed = time.monotonic() - handler.started
    if not result.success and dbt_log.lines:
        terminal.say(terminal.style("last lines of the dbt log:", "bold"))
        for line in dbt_log.lines:
            terminal.say(f"  {line}")
    if result.success and not handler.failed_checks:
        terminal.ok(f"pipeline finished in {elapsed:.1f} s ({handler.built} assets built, "
                    f"{handler.passed_checks} checks passed)")
    elif result.success:
        terminal.say(terminal.style(f"pipeline finished in {elapsed:.1f} s, but "
                                    f"{len(handler.failed_checks)} check(s) failed: "
                                    + ", ".join(handler.failed_checks), "yellow"))
    else:
        terminal.error(f"pipeline FAILED after {elapsed:.1f} s",
                       "read the step failure above; fix the input or the catalog and run again "
                       "(what was ingested stays ingested)")
    return result.success


def check_warehouse_reachable(target: str, duckdb_path: str) -> None:
    """Fail before anything runs when the Postgres warehouse cannot be reached (host and port
    named), rather than with one failure per step."""
    if target != "postgres":
        return
    from orchestration.warehouse import Warehouse, WarehouseConfig, WarehouseUnavailable

    try:
        with Warehouse(WarehouseConfig.from_env(target=target, duckdb_path=duckdb_path)):
            pass
    except WarehouseUnavailable as exc:
        raise CliError(str(exc), "start PostgreSQL, or point MH_PG_HOST, MH_PG_PORT, MH_PG_USER, "
                       "MH_PG_PASSWORD and MH_PG_DATABASE at it", EXIT_UNAVAILABLE) from None


def cmd_run(args: argparse.Namespace, terminal: Terminal) -> int:
    check_warehouse_reachable(args.target, args.warehouse)
    ok = run_pipeline(Path(args.catalog), Path(args.landing) if args.landing else None,
                      args.target, args.warehouse, args.events_table, terminal, args.verbose)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_demo(args: argparse.Namespace, terminal: Terminal) -> int:
    from orchestration.summary import print_summary
    from orchestration.warehouse import Warehouse, WarehouseConfig

    out = Path(args.out)
    terminal.step(f"1/3 generating {args.events:,} sample events under {out}/")
    data = _generate_with_progress(terminal, out, args.events)
    warehouse_path = Path(args.warehouse)
    if warehouse_path.exists():
        warehouse_path.unlink()  # the demo always starts from an empty warehouse
    terminal.step(f"2/3 running the pipeline on DuckDB ({warehouse_path})")
    if not run_pipeline(data.catalog_dir, data.landing_dir, "duckdb", str(warehouse_path),
                        terminal=terminal):
        return EXIT_FAILED
    terminal.step("3/3 summary")
    with Warehouse(WarehouseConfig(target="duckdb", duckdb_path=str(warehouse_path))) as wh:
        print_summary(wh, data)
    key = next(iter(data.api_keys.values()), "")
    terminal.say("\nServe it and open the dashboard:")
    terminal.say(f"  .venv/bin/meterhouse serve --warehouse {warehouse_path}")
    terminal.say(f"  http://127.0.0.1:8000/dashboard   (API keys: {data.api_keys_file}"
                 + (f", e.g. {key}" if key else "") + ")")
    return EXIT_OK


def cmd_query(args: argparse.Namespace, terminal: Terminal) -> int:
    from orchestration.query import (
        QueryRequest,
        as_csv,
        as_json,
        as_table,
        open_warehouse,
        run_query,
    )
    from orchestration.warehouse import WarehouseConfig

    meters = tuple(m.strip() for value in args.meter for m in value.split(",") if m.strip())
    request = QueryRequest(customer=args.customer, meters=meters, start=args.start, end=args.end,
                           window=args.window, timezone=args.timezone, tenant=args.tenant,
                           environment=args.environment)
    _refuse_spark(args, "meterhouse query")
    config = WarehouseConfig.from_env(target=args.target, duckdb_path=args.warehouse)
    with open_warehouse(config) as warehouse:
        result = run_query(warehouse, request)
    if args.format == "json":
        terminal.say(as_json(result))
    elif args.format == "csv":
        terminal.out.write(as_csv(result))
        terminal.out.flush()
    else:
        terminal.say(as_table(result, terminal.style))
    return EXIT_OK


def _refuse_spark(args: argparse.Namespace, what: str) -> None:
    if args.target == "spark":
        raise CliError(f"{what} reads DuckDB or PostgreSQL, not Spark",
                       "read the Spark marts with Spark SQL or a BI tool "
                       "(README: Scale out on Spark)")


def cmd_serve(args: argparse.Namespace, terminal: Terminal) -> int:
    """Run the read API with uvicorn until interrupted."""
    import uvicorn

    from api.app import create_app
    from api.serving import publish_if_stale
    from api.settings import Settings

    _refuse_spark(args, "the read API")
    settings = Settings.from_env(target=args.target, duckdb_path=args.warehouse)
    if args.serving_dir:
        settings = settings.model_copy(update={"serving_dir": args.serving_dir})
    if settings.warehouse.target == "duckdb":
        if not Path(args.warehouse).exists():
            terminal.warn(f"there is no warehouse at {args.warehouse} yet: requests get 503 "
                          "until `meterhouse run` (or `meterhouse demo`) has built it")
        terminal.say(publish_if_stale(settings.warehouse, settings.serving_dir))
        where = f"DuckDB {args.warehouse}"
    else:
        config = settings.warehouse
        where = f"PostgreSQL {config.pg_host}:{config.pg_port}/{config.pg_database}"
    base = f"http://{args.host}:{args.port}"
    terminal.say(f"read API over {where} on {base} (docs at /docs, OpenAPI at /openapi.json)")
    terminal.say(f"usage dashboard: {base}/dashboard")
    try:
        if args.workers > 1:
            # each worker process builds its app from the environment: hand it these settings
            os.environ.update({"MH_TARGET": settings.warehouse.target,
                               "MH_DUCKDB_PATH": settings.warehouse.duckdb_path,
                               "MH_SERVING_DIR": settings.serving_dir})
            uvicorn.run("api.app:create_app", factory=True, workers=args.workers,
                        host=args.host, port=args.port, log_level="warning")
        else:
            uvicorn.run(create_app(settings), host=args.host, port=args.port,
                        log_level="warning")
    except OSError as exc:  # pragma: no cover - port in use and the like
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}",
                       "pick another --port or stop the process using it",
                       EXIT_UNAVAILABLE) from None
    return EXIT_OK


def cmd_soak(args: argparse.Namespace, terminal: Terminal) -> int:
    from orchestration.soak import run_soak

    ok = run_soak(args.events, Path(args.work_dir), args.target, rebuild=not args.no_rebuild,
                  say=terminal.say)
    return EXIT_OK if ok else EXIT_FAILED


def cmd_bench(args: argparse.Namespace, terminal: Terminal) -> int:
    try:
        from bench.run import main as bench_main
    except ImportError:
        raise CliError("the benchmark is not importable from here",
                       "run it from the repository root (make bench ARGS=...)",
                       EXIT_NOT_FOUND) from None
    return bench_main(list(args.bench_args))


if __name__ == "__main__":
    sys.exit(main())
