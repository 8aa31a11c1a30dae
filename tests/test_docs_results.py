"""Every table a doc marks as generated is what its tool's ``report`` makes from the
committed JSON beside it: a doc and its result cannot drift apart."""

from __future__ import annotations

import importlib
import json
import re

import pytest

from client.bench.report import report as bench_report
from tests.servers import ROOT

pytestmark = pytest.mark.unit

BLOCK = re.compile(
    r"<!-- generated from (?P<json>\S+) by (?P<module>[\w.]+)\.(?P<function>\w+) -->\n"
    r"(?P<body>.*?)<!-- end generated -->",
    re.DOTALL,
)


def blocks() -> list[tuple[str, re.Match[str]]]:
    found = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        found += [(doc.name, match) for match in BLOCK.finditer(doc.read_text())]
    return found


def test_every_tool_that_docs_quote_has_its_table_generated() -> None:
    tools = {block["json"].split("/")[2] for _, block in blocks()}
    assert {"claims", "perf", "attack", "scale", "docker-bench"} <= tools, tools


@pytest.mark.parametrize(("doc", "block"), blocks(), ids=lambda v: getattr(v, "group", str)(0)[:60]
                         if not isinstance(v, str) else v)  # fmt: skip
def test_a_generated_table_is_its_json_report(doc: str, block: re.Match[str]) -> None:
    module = importlib.import_module(block["module"])
    result = json.loads((ROOT / block["json"]).read_text())
    assert getattr(module, block["function"])(result) == block["body"], (
        f"{doc}: the table from {block['json']} changed; paste "
        f"{block['module']}.{block['function']}'s output again"
    )


def test_the_committed_benchmark_report_is_its_json() -> None:
    """docs/results/bench/: the `make bench` run the README and docs/benchmark.md quote;
    its report.md is what ``python -m client.bench report`` makes from its results.json."""
    folder = ROOT / "docs" / "results" / "bench"
    run = json.loads((folder / "results.json").read_text())
    assert bench_report(run) == (folder / "report.md").read_text()
    for image in re.findall(r"\]\((\w+\.png)\)", (folder / "report.md").read_text()):
        assert (folder / image).is_file(), image
