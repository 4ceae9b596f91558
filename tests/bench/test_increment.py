"""The incremental workload (bench/increment.py): exactly 1% new events with fresh ids, half of
them late and spread over the last 30 days, landing after every earlier file, identical for a
seed — and our ingest stores every one of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from bench.increment import write_increment
from orchestration.generate import generate_dataset
from orchestration.ingest import find_landing_files, ingest_landing
from orchestration.warehouse import Warehouse, WarehouseConfig

START = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("increment")
    data = generate_dataset(root / "data", events=5_000, days=31, seed=3, tenants=2,
                            customers=20)
    config = WarehouseConfig(target="duckdb", duckdb_path=str(root / "warehouse.duckdb"))
    with Warehouse(config) as wh:
        ingest_landing(wh, data.landing_dir)
        distinct = wh.query("select count(distinct (tenant_id, environment_id, event_id)) "
                            "from raw_events")[0][0]
    return {"root": root, "data": data, "config": config, "distinct": distinct}


def _rows(files: list[str]) -> list[dict]:
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def test_one_percent_new_events_half_late_over_the_last_30_days(ingested: dict) -> None:
    landing = ingested["root"] / "landing_a"
    increment = write_increment(Path(ingested["config"].duckdb_path), landing, 0.01, seed=7)

    assert increment.events == round(ingested["distinct"] * 0.01)
    assert increment.late_events == increment.events // 2
    arrival = START + timedelta(days=31)
    assert increment.arrival_day == arrival.date().isoformat()
    rows = _rows(list(increment.files))
    assert len(rows) == increment.events
    stamps = [datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in rows]
    late = [t for t in stamps if t < arrival]
    assert len(late) == increment.late_events
    assert all(arrival - timedelta(days=30) <= t for t in late)
    assert all(arrival <= t < arrival + timedelta(days=1) for t in stamps if t >= arrival)
    # spread over the 30 days, not bunched: most days of the last 30 hold a late event
    assert len({t.date() for t in late}) >= 15


def test_new_ids_land_after_every_earlier_file_and_are_stored(ingested: dict,
                                                              tmp_path: Path) -> None:
    import shutil

    landing = tmp_path / "landing"
    shutil.copytree(ingested["data"].landing_dir, landing)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(ingested["config"].duckdb_path, warehouse)
    before = [f.source_file for f in find_landing_files(landing)]
    increment = write_increment(warehouse, landing, 0.01, seed=7)
    after = [f.source_file for f in find_landing_files(landing)]
    new_files = [f for f in after if f not in before]
    assert len(new_files) == len(increment.files) >= 1
    # in each tenant environment, the new file sorts after every earlier one
    for new in new_files:
        scope = "/".join(new.split("/")[:2]) + "/"
        assert max(f for f in after if f.startswith(scope)) == new

    config = WarehouseConfig(target="duckdb", duckdb_path=str(warehouse))
    with Warehouse(config) as wh:
        rows_before = wh.query("select count(*) from raw_events")[0][0]
        report = ingest_landing(wh, landing)
        rows_after = wh.query("select count(*) from raw_events")[0][0]
        reused = wh.query("select count(*) from raw_events where event_id like 'evt_inc_%' "
                          "group by event_id having count(*) > 1")
    assert report.files_ingested == len(new_files)
    assert report.rejected == 0
    assert rows_after - rows_before == increment.events
    assert reused == []


def test_the_same_warehouse_and_seed_give_the_same_files(ingested: dict, tmp_path: Path) -> None:
    warehouse = Path(ingested["config"].duckdb_path)
    first = write_increment(warehouse, tmp_path / "a", 0.01, seed=7)
    second = write_increment(warehouse, tmp_path / "b", 0.01, seed=7)
    other = write_increment(warehouse, tmp_path / "c", 0.01, seed=8)
    assert _rows(list(first.files)) == _rows(list(second.files))
    assert _rows(list(first.files)) != _rows(list(other.files))


def test_the_warehouse_is_only_read(ingested: dict, tmp_path: Path) -> None:
    warehouse = Path(ingested["config"].duckdb_path)
    before = warehouse.stat().st_mtime_ns
    write_increment(warehouse, tmp_path / "landing", 0.01)
    assert warehouse.stat().st_mtime_ns == before
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("select count(*) from raw_events where event_id like 'evt_inc_%'"
                           ).fetchone()[0] == 0
    finally:
        con.close()


def test_reusing_a_work_folder_leaves_its_increment_out(ingested: dict, tmp_path: Path) -> None:
    """`bench.run --data` links the generated landing files of an earlier work folder; the 1%
    its incremental run landed there is not generated data and would be ingested twice."""
    import json
    import shutil

    from bench.workload import PARAMETERS, reuse_dataset

    source = tmp_path / "earlier"
    shutil.copytree(ingested["data"].landing_dir, source / "data" / "landing")
    (source / "data" / "catalog").mkdir()
    (source / "data" / "api_keys.txt").write_text("")
    wanted = {key: 1 for key in PARAMETERS}
    (source / "phases").mkdir()
    (source / "phases" / "generate.spec.json").write_text(json.dumps(wanted))
    (source / "phases" / "generate.result.json").write_text(json.dumps({"ok": True}))
    generated = sorted(f.source_file for f in find_landing_files(source / "data" / "landing"))
    increment = write_increment(Path(ingested["config"].duckdb_path),
                                source / "data" / "landing", 0.01, seed=7)
    assert increment.files

    result = reuse_dataset(source, tmp_path / "data", wanted)

    linked = sorted(f.source_file for f in find_landing_files(tmp_path / "data" / "landing"))
    assert linked == generated
    assert result["files_linked"] + result["files_copied"] == len(generated)
