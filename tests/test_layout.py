"""The house rules, checked: imports run one way, nothing outside tests/ reads tests/,
each part imports only what its extra installs, every setting is documented, and the
uvicorn internals the REST service extends still have the shape it extends."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from facewire.settings import Settings
from tests.servers import ROOT

pytestmark = pytest.mark.unit

SERVICES = ("facewire", "rest_service", "grpc_service")


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        if (ROOT / folder).is_file():
            yield ROOT / folder
            continue
        yield from (p for p in (ROOT / folder).rglob("*.py") if "_pb2" not in p.name)


def imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (at any depth: inside functions too), with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def test_the_client_imports_no_server_module() -> None:
    """Dependencies flow one way: the wire formats are in the core (facewire.wire), and
    the client runs the servers as programs, never imports them."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files("client")
        for module, line in imported_modules(path)
        if module.split(".")[0] in ("rest_service", "grpc_service")
    ]
    assert found == []


def test_the_services_import_no_client_module() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in python_files(*SERVICES)
        for module, line in imported_modules(path)
        if module.split(".")[0] in ("client", "tests")
    ]
    assert found == []


def test_nothing_outside_tests_reads_tests() -> None:
    """No code outside tests/ names the folder: what the benchmark needs ships with it."""
    pattern = re.compile(r"""["'/]tests["'/]|ROOT / "tests\"""")
    code = [*python_files(*SERVICES, "client", "scripts", "fuzz"),
            *(ROOT / "scripts").glob("*.sh"), ROOT / "Makefile", ROOT / "Dockerfile"]  # fmt: skip
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in code
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line) and "pytest" not in line
    ]
    assert found == []


# --- each part imports only what its own extra installs ----------------------------

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: Each part of the house: its folders (and folders it must leave out), and the extras
#: its imports may come from, the services' dependencies always included. OpenCV is
#: either wheel, whichever extra picked it.
PARTS = {
    "services": ((SERVICES, ("rest_service/granian_server.py",)), ("headless",)),
    # FACEWIRE_REST_SERVER=granian: the asgi extra's (the images serve on uvicorn).
    "REST on Granian": ((("rest_service/granian_server.py",), ()), ("headless", "asgi")),
    "client": (
        (("client",), ("client/bench", "client/attack", "client/scale")),
        ("headless", "client"),
    ),
    "scale": ((("client/scale",), ()), ("headless", "bench")),
    "benchmark": ((("client/bench",), ("client/bench/distributed.py",)), ("headless", "bench")),
    "distributed load": ((("client/bench/distributed.py",), ()), ("headless", "distributed")),
    "attack suite": ((("client/attack",), ()), ("headless", "attack")),
}


def distributions(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install, with everything they depend on (read
    from the installed metadata), by canonical name."""
    wanted = [Requirement(r) for r in requirements]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = requirement.name.lower().replace("_", "-")
        if name == "facewire":  # a self-reference: facewire[client] in another extra
            for extra in requirement.extras:
                wanted += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
            continue
        if name in found:
            continue
        found.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # the other OpenCV wheel, say: not installed here
        for text in requires:
            dependency = Requirement(text)
            extras = set(requirement.extras)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
                wanted.append(dependency)
    return found


def third_party_imports(folders: tuple[str, ...], leave_out: tuple[str, ...]) -> set[str]:
    ours = {"facewire", "rest_service", "grpc_service", "client"}
    names = set()
    for path in python_files(*folders):
        if any(path.is_relative_to(ROOT / out) for out in leave_out):
            continue
        for module, _ in imported_modules(path):
            top = module.split(".")[0]
            if top not in ours and top not in __import__("sys").stdlib_module_names:
                names.add(top)
    return names


@pytest.mark.parametrize("part", list(PARTS))
def test_each_part_imports_only_what_its_extra_installs(part: str) -> None:
    (folders, leave_out), extras = PARTS[part]
    requirements = list(PROJECT["dependencies"])
    for extra in extras:
        requirements += PROJECT["optional-dependencies"][extra]
    allowed = distributions(requirements)
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in third_party_imports(folders, leave_out):
        given_by = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        if module == "cv2":
            given_by = {"opencv-python-headless"}  # either wheel; the extra picks one
        if not given_by & allowed:
            missing[module] = sorted(given_by)
    assert missing == {}, f"{part} imports what its extras do not install: {missing}"


def test_the_services_dependencies_hold_no_client_or_benchmark_package() -> None:
    services = distributions(list(PROJECT["dependencies"]))
    for package in ("httpx", "rich", "matplotlib", "hdrhistogram", "pytest", "opencv-python"):
        assert package not in services


# --- docs and internals ------------------------------------------------------------


def test_every_setting_is_in_the_configuration_table() -> None:
    table = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(FACEWIRE_[A-Z0-9_]+)`", table, re.MULTILINE))
    settings = {f"FACEWIRE_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from docs/configuration.md"
    assert documented - settings == set(), "docs/configuration.md lists settings that are gone"


def test_the_uvicorn_internals_we_extend_keep_their_shape() -> None:
    """rest_service.protocol subclasses uvicorn's HttpToolsProtocol (pinned to one minor
    release in pyproject.toml): the methods it overrides or calls, their parameters,
    and the attributes and table it uses must be there as it uses them."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    expected = {
        "on_message_begin": ["self"],
        "on_url": ["self", "url"],
        "on_header": ["self", "name", "value"],
        "on_headers_complete": ["self"],
        "connection_lost": ["self", "exc"],
        "send_400_response": ["self", "msg"],
    }
    for name, parameters in expected.items():
        method = getattr(HttpToolsProtocol, name)
        assert list(inspect.signature(method).parameters) == parameters, name
    init = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert init[:2] == ["self", "config"]
    source = inspect.getsource(HttpToolsProtocol)
    assert "self.transport" in source
    assert "self.loop" in source
    assert {408, 431} <= set(STATUS_LINE)
    assert all(line.startswith(b"HTTP/1.1 ") for line in STATUS_LINE.values())
    pinned = next(r for r in PROJECT["dependencies"] if r.startswith("uvicorn"))
    version = importlib.metadata.version("uvicorn")
    assert Requirement(pinned).specifier.contains(version), (pinned, version)
