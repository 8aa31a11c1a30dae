"""Every table a doc marks as generated is what its tool's ``report`` makes from the
committed JSON beside it: a doc and its result cannot drift apart."""

from __future__ import annotations

import importlib
import json
import re

import pytest

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


def test_the_docs_have_generated_tables() -> None:
    names = {name for name, _ in blocks()}
    assert {"benchmark.md", "performance.md"} <= names


@pytest.mark.parametrize(("doc", "block"), blocks(), ids=lambda v: getattr(v, "group", str)(0)[:60]
                         if not isinstance(v, str) else v)  # fmt: skip
def test_a_generated_table_is_its_json_report(doc: str, block: re.Match[str]) -> None:
    module = importlib.import_module(block["module"])
    result = json.loads((ROOT / block["json"]).read_text())
    assert getattr(module, block["function"])(result) == block["body"], (
        f"{doc}: the table from {block['json']} changed; paste "
        f"{block['module']}.{block['function']}'s output again"
    )
