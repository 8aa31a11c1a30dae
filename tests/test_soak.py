"""The short version of ``make soak``: the same harness, both services, 20 seconds."""

from __future__ import annotations

import json
from pathlib import Path

from client.transports import ALL_PROTOCOLS
from tests.make import make_results


def test_a_short_soak_loses_nothing_and_answers_everything(tmp_path: Path) -> None:
    """``make soak`` with a short duration, into its default soak-results/<time>/."""
    args = ["--duration", "20", "--interval", "4", "--rate", "3", "--save-every", "3"]
    done, out = make_results("soak", "soak-results", tmp_path, args, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "soak.json").read_text())
    assert result["passed"]
    assert result["failures"] == []
    totals = result["totals"]
    for kind in [*ALL_PROTOCOLS, "hostile"]:
        assert totals[kind]["sent"] > 0
        assert totals[kind]["answered"] == totals[kind]["sent"]  # hostile: refused as meant
        assert totals[kind]["errors"] == {}
    records = result["records"]
    assert records["saves_answered"] == records["saves_sent"] > 0
    assert records["rows"] == records["images"] == records["saves_answered"]
    assert records["lost"] == records["duplicated"] == records["audit_problems"] == []
    assert result["exit_codes"] == {"rest": 0, "grpc": 0}
    assert len(result["intervals"]) >= 5
    assert all(set(i["rss_mib"]) == {"rest", "grpc"} for i in result["intervals"][:5])
    assert (out / "soak.png").stat().st_size > 0
    assert "Verdict: passed." in (out / "soak.md").read_text()
