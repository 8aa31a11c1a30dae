"""nginx (Debian's package), started and stopped by facewire with a generated config:
REST through ``proxy_pass`` with upstream keep-alive, gRPC through ``grpc_pass`` over
HTTP/2 (both balance each request), and the same replicas through the ``stream`` module
(TCP: each connection goes to one replica, for as long as it lives)."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from client.processes import free_port
from facewire.children import spawn
from facewire.children import stop as stop_process

STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


@dataclass(frozen=True)
class Fronts:
    """The balancer's four ports."""

    rest_l7: int
    grpc_l7: int
    rest_tcp: int
    grpc_tcp: int
    grpc_aged_tcp: int  # the replicas whose connections age out


def config(prefix: Path, rest: list[int], grpc: list[int], aged: list[int], fronts: Fronts) -> str:
    def servers(ports: list[int]) -> str:
        return "".join(f"    server 127.0.0.1:{port};\n" for port in ports)

    temp = "".join(f"  {kind}_temp_path {prefix}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    return f"""load_module {STREAM_MODULE};
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}  client_max_body_size 8m;
  client_body_buffer_size 1m;
  upstream rest {{
{servers(rest)}    keepalive 32;
  }}
  upstream grpc {{
{servers(grpc)}    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{fronts.rest_l7};
    location / {{
      proxy_pass http://rest;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Bodies go to the replica as they arrive, never to a temporary file (whose
      # folder nginx's workers, another user when started by root, may not write).
      proxy_request_buffering off;
    }}
  }}
  server {{
    listen 127.0.0.1:{fronts.grpc_l7} http2;
    location / {{ grpc_pass grpc://grpc; }}
  }}
}}
stream {{
  upstream rest_tcp {{
{servers(rest)}  }}
  upstream grpc_tcp {{
{servers(grpc)}  }}
  upstream grpc_aged_tcp {{
{servers(aged)}  }}
  server {{ listen 127.0.0.1:{fronts.rest_tcp}; proxy_pass rest_tcp; }}
  server {{ listen 127.0.0.1:{fronts.grpc_tcp}; proxy_pass grpc_tcp; }}
  server {{ listen 127.0.0.1:{fronts.grpc_aged_tcp}; proxy_pass grpc_aged_tcp; }}
}}
"""


class Nginx:
    """nginx in the foreground, its files under ``prefix``; stopped on exit (SIGQUIT:
    graceful, then SIGKILL)."""

    def __init__(self, prefix: Path, rest: list[int], grpc: list[int], aged: list[int]) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists() or not STREAM_MODULE.exists():
            raise RuntimeError("make scale needs nginx and its stream module: "
                               "apt-get install nginx libnginx-mod-stream")  # fmt: skip
        # Absolute: nginx reads a relative -c (and the config's paths) under its -p prefix,
        # so a relative prefix would be doubled (make scale's default scale-results/...).
        prefix = prefix.resolve()
        prefix.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.fronts = Fronts(*(free_port() for _ in range(5)))
        conf = prefix / "nginx.conf"
        conf.write_text(config(prefix, rest, grpc, aged, self.fronts))
        # SIGQUIT if this process dies: nginx's graceful stop.
        self.popen = spawn([binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           death_signal=signal.SIGQUIT)  # fmt: skip
        self._wait_listening()

    def _wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        for port in dataclasses.astuple(self.fronts):
            while True:
                if self.popen.poll() is not None:
                    error = self.popen.stderr.read().decode() if self.popen.stderr else ""
                    raise RuntimeError(f"nginx exited: {error.strip()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not listen on {port}") from None
                    time.sleep(0.05)  # polling another process's port

    def __enter__(self) -> Nginx:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stop_process(self.popen, 10.0, signal.SIGQUIT)  # SIGQUIT: nginx's graceful stop
