"""The REST service's API docs work with no Internet: /docs (Swagger UI) and /redoc load
every script, style and icon from the service itself, and a headless Chromium that can
resolve no host but loopback renders the operations."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

PAGES = ("/docs", "/redoc")
#: The attributes through which a page loads or links something.
URL_ATTRIBUTES = frozenset({"src", "href", "spec-url"})


class _Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in URL_ATTRIBUTES and value]


def page_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("page", PAGES)
def test_the_docs_pages_load_nothing_from_another_host(
    http: httpx.Client, rest_url: str, page: str
) -> None:
    reply = http.get(page)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    urls = page_urls(reply.text)
    assert urls, reply.text
    service = urlsplit(rest_url)
    for url in urls:
        parts = urlsplit(url)
        assert parts.netloc in ("", service.netloc), f"{page} loads {url}"
        assert parts.scheme in ("", service.scheme), f"{page} loads {url}"
    # Inline scripts too (Swagger UI's set-up names the schema's URL in one).
    assert not re.search(r"https?://|//[a-z]", reply.text, re.IGNORECASE), reply.text
    for url in urls:
        asset = http.get(urljoin(f"{rest_url}{page}", url))
        assert asset.status_code == 200, url
        assert asset.content, url


def chromium() -> str:
    """The browser, or a skip where it is missing and cannot be installed (not root)."""
    found = shutil.which("chromium")
    if found is not None:
        return found
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed, and installing it needs root: "
                    "apt-get install chromium (./scripts/system-deps.sh as root)")  # fmt: skip
    # As root, failing beats skipping: `make test` installs it.
    raise RuntimeError("the API docs test needs chromium: run ./scripts/system-deps.sh")


def browse(url: str, profile: Path, *options: str) -> str:
    """What headless Chromium prints for ``url``, with every host but loopback
    unresolvable (an air-gapped host) and the page's timers run ahead (virtual time), so
    scripts have fetched the schema and rendered before the page is read."""
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000", *options, url]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_chromium_renders_swagger_ui_offline(rest_url: str, tmp_path: Path) -> None:
    dom = browse(f"{rest_url}/docs", tmp_path / "profile", "--dump-dom")
    # Swagger UI's operation blocks: present only once its script ran on the schema.
    assert re.search(r'class="opblock opblock-post[^"]*"', dom), dom[-4000:]
    assert 'data-path="/v1/detect"' in dom, dom[-4000:]
    screenshot = tmp_path / "api-docs.png"
    browse(f"{rest_url}/docs", tmp_path / "profile-shot", f"--screenshot={screenshot}",
           "--window-size=1280,1600")  # fmt: skip
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    artifacts = os.environ.get("FACEWIRE_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artifacts) / screenshot.name)


def test_chromium_renders_redoc_offline(rest_url: str, tmp_path: Path) -> None:
    dom = browse(f"{rest_url}/redoc", tmp_path / "profile", "--dump-dom")
    # The page as served names no path: ReDoc rendered this one from the schema.
    assert re.search(r">/v1/detect<", dom), dom[-4000:]
