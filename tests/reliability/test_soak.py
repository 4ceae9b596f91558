"""`meterhouse soak` on a small workload: every invariant holds after the first build, after
a batch run with 1% late events and after a full rebuild, and the two agree."""

import pytest

from orchestration.cli import main

pytestmark = pytest.mark.slow


def test_soak_passes_on_a_small_workload(tmp_path, capsys):
    assert main(["soak", "--events", "3000", "--work-dir", str(tmp_path / "soak")]) == 0
    out = capsys.readouterr().out
    for step in ("the first build", "the batch run", "the full rebuild"):
        assert f"invariants hold after {step}" in out
    assert "late events over the last 30 days" in out
    assert "FAILED" not in out
