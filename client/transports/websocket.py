"""Frames on one long-lived WebSocket (``/v1/stream``), each answered in turn: the
stream a browser can open, with ``websockets``' synchronous client."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from client.transports.base import ProtocolName, Reply, TransportError, first_line, ssl_context
from facewire.wire import v1_json


class WebSocketTransport:
    """``/v1/stream`` on the REST service: per frame a text message with its options and
    a binary message with the image, then the answer (a text message). A closed or
    broken connection is opened again on next use; opening is outside the clock."""

    name: ProtocolName = "rest-ws"

    def __init__(self, base_url: str, timeout: float = 10.0, token: str | None = None,
                 ca_file: Path | str | None = None) -> None:  # fmt: skip
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        scheme = "wss" if url.scheme == "https" else "ws"
        self._url = urlunsplit((scheme, url.netloc, f"{url.path.rstrip('/')}/v1/stream", "", ""))
        self._ssl = ssl_context(ca_file) if scheme == "wss" else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._connection: ClientConnection | None = None
        self._open = contextlib.ExitStack()  # the connection's context, held open

    def _connect(self) -> ClientConnection:
        if self._connection is None:
            try:
                self._connection = self._open.enter_context(connect(
                    self._url, ssl=self._ssl, additional_headers=self._headers,
                    open_timeout=min(self._timeout, 2.0), compression=None, max_size=None,
                ))  # fmt: skip
            except InvalidStatus as exc:
                status = exc.response.status_code
                detail = _detail(bytes(exc.response.body or b""))
                raise TransportError("rejected", f"HTTP {status}: {detail}") from None
            except TimeoutError:
                raise TransportError("timeout", f"no WebSocket at {self._url}") from None
            except (OSError, WebSocketException) as exc:
                raise TransportError("unreachable", f"{self._url}: {first_line(exc)}") from None
        return self._connection

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        connection = self._connect()
        start = time.perf_counter_ns()
        options = json.dumps({"frame_id": frame_id, "model": model, "save": save})
        try:
            connection.send(options)
            connection.send(image)
            answer = connection.recv(timeout=self._timeout)
        except TimeoutError:
            self.close()  # an answer may still come: the next frame must not take it
            raise TransportError("timeout", f"no answer in {self._timeout:g} s") from None
        except ConnectionClosed as exc:
            self.close()
            reason = exc.rcvd.reason if exc.rcvd is not None else "no close frame"
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            raise TransportError("rejected", f"stream closed ({code}): {reason}") from None
        received = time.perf_counter_ns()
        data = answer.encode() if isinstance(answer, str) else answer
        try:
            document = json.loads(data)
            if isinstance(document, dict) and "status" in document:
                error = v1_json.StreamError.model_validate(document)
                raise TransportError("rejected", f"HTTP {error.status}: {error.detail}")
            result = v1_json.json_to_result(v1_json.DetectResponse.model_validate(document))
        except (ValueError, ValidationError):
            raise TransportError("protocol", "the reply is not a facewire answer") from None
        end = time.perf_counter_ns()
        sent = len(options) + len(image)
        return Reply(result, (end - start) / 1e6, sent, len(data), (end - received) / 1e6)

    def close(self) -> None:
        self._connection = None
        self._open.close()


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode(errors="replace")
