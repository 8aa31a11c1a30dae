"""P6: the real GUI on a virtual screen (or the real one), sample source, mode both."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

from client import xvfb
from client.bench.perf.targets import Results
from client.processes import Child


def measure_gui(url: str, target: str, seconds: float, results: Results, workdir: Path) -> None:
    """The real GUI on a virtual screen (or the real one), sample source, mode both."""
    if xvfb.available():
        screen: contextlib.AbstractContextManager[str] = xvfb.virtual_display()
    elif os.environ.get("DISPLAY"):
        screen = contextlib.nullcontext(os.environ["DISPLAY"])
    else:
        results.notes["P6"] = "not measured: no Xvfb and no display"
        return
    rates_file = workdir / "gui-rates.json"
    args = ["--source", "sample", "--mode", "both", "--log-every", "0",
            "--duration", f"{seconds:g}", "--rest-url", url, "--grpc-target", target,
            "--rates-json", str(rates_file)]  # fmt: skip
    with screen as display:
        gui = Child("client", args, {"DISPLAY": display}, log=workdir / "gui.log")
        try:
            code = gui.popen.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            gui.stop()
            raise RuntimeError(
                f"the GUI did not close after {seconds:g} s; see {gui.log}"
            ) from None
    if code != 0 or not rates_file.exists():
        raise RuntimeError(f"the GUI exited with {code}; see {gui.log}")
    rates = json.loads(rates_file.read_text())
    results.add("P6", "window fps", rates["fps"])
    for protocol, rate in rates["updates_per_s"].items():
        results.add("P6", f"{protocol} overlay updates/s", rate)
