"""REST over one kept-alive HTTP/1.1 connection: facewire's ``/v1/detect`` (the image
raw, in a multipart form, or in a protobuf message) and the Open Inference Protocol's
``/v2/models/<model>/infer``; and the same over HTTP/2 (``rest-h2``).

The standard library's ``http.client`` rather than httpx for HTTP/1.1: on loopback
httpx's own Python costs about 0.4 ms a request (docs/performance.md), which would be
counted against REST. HTTP/2 needs httpx (with h2): ``rest-h2`` pays that cost, and
``make claims``' factorial compares the HTTP versions both through httpx
(``http_version="httpx-1.1"``) so that the client library is held still. A connection
that fails is dropped and the next call makes a new one.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import urlencode, urlsplit

from google.protobuf.message import DecodeError
from pydantic import ValidationError

from client.transports.base import (
    ProtocolName,
    Reply,
    TransportError,
    core_request,
    first_line,
    ssl_context,
)
from facewire import inference
from facewire.messages import DetectionResult
from facewire.v1 import face_detection_pb2 as pb
from facewire.wire import v1_json, v1_proto, v2_json

#: "1.1": http.client (the default); "2": HTTP/2 over httpx (h2c with prior knowledge in
#: clear, ALPN with TLS); "httpx-1.1": HTTP/1.1 over httpx, so that a comparison with "2"
#: holds the client library still (``make claims``' factorial).
HttpVersion = Literal["1.1", "2", "httpx-1.1"]
#: The protocol names of the transports over HTTP/2.
_HTTP2_NAMES: dict[str, ProtocolName] = {"rest": "rest-h2", "rest-protobuf": "rest-h2-protobuf"}


class Answer(NamedTuple):
    """An HTTP answer, whichever client read it."""

    status: int
    reason: str
    header: Callable[[str], str | None]  # by name, case-insensitive
    body: bytes


class HttpxExchange:
    """Requests over one httpx connection: HTTP/2 (one connection, streams multiplexed
    when threads share the transport) or HTTP/1.1.

    Over HTTP/2 every answer's version is checked: a server that does not speak it fails
    the call clearly rather than being measured as something else.
    """

    def __init__(self, base_url: str, timeout: float, ssl: Any, version: HttpVersion) -> None:
        import httpx  # the client extra's; only these transports need it

        self._http2 = version == "2"
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"  # paths come whole
        self._client = httpx.Client(
            http1=not self._http2,
            http2=self._http2,
            verify=ssl if ssl is not None else True,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=1 if self._http2 else None),
        )
        self._errors = (httpx.TimeoutException, httpx.TransportError)
        self._timeouts = httpx.TimeoutException
        self._answered = False

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self._client.post(self._origin + path, content=body, headers=headers)
        except self._timeouts:
            raise TransportError("timeout", "no answer in time") from None
        except self._errors as exc:
            why = first_line(exc) or type(exc).__name__
            if self._http2 and not self._answered:
                # An HTTP/1.1 server drops the connection at HTTP/2's preface.
                why += (
                    " (before any answer: does the server speak HTTP/2? "
                    "FACEWIRE_REST_SERVER=granian serves it)"
                )
            raise TransportError("unreachable", why) from None
        self._answered = True
        if self._http2 and response.http_version != "HTTP/2":
            spoken = response.http_version
            raise TransportError("protocol", f"the server answered in {spoken}, not HTTP/2 "
                                 "(FACEWIRE_REST_SERVER=granian serves it)")  # fmt: skip
        return Answer(response.status_code, response.reason_phrase, response.headers.get,
                      response.content)  # fmt: skip

    def close(self) -> None:
        self._client.close()


class RestTransport:
    """POST /v1/detect with the raw JPEG body. With ``new_connection``, every request
    opens its own connection (and says ``Connection: close``), inside the measured time:
    what a client that does not keep connections alive pays."""

    name: ProtocolName = "rest"

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        token: str | None = None,
        ca_file: Path | str | None = None,
        new_connection: bool = False,
        http_version: HttpVersion = "1.1",
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        # One context for every connection (http.client would load the trust store anew
        # for each); ca_file only matters for https.
        self._ssl = ssl_context(ca_file) if url.scheme == "https" else None
        self._host = url.hostname
        self._port = url.port
        self._base = url.path.rstrip("/")
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None
        self._new_connection = new_connection
        close = {"Connection": "close"} if new_connection else {}
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._auth.update(close)  # every request's extra headers
        self._headers = {"Content-Type": "image/jpeg", **self._auth}
        #: HTTP/2 (httpx over h2), or HTTP/1.1 through httpx: see ``HttpxExchange``.
        self._h2: HttpxExchange | None = None
        if http_version != "1.1":
            if new_connection:
                raise ValueError("a new connection per request is HTTP/1.1's (http.client)")
            self._h2 = HttpxExchange(base_url, timeout, self._ssl, http_version)
            if http_version == "2":
                self.name = _HTTP2_NAMES.get(self.name, self.name)

    def _connect(self) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is not None and connection.sock is not None:
            # Readable while idle means the server closed it (uvicorn drops idle
            # keep-alive connections after 5 s): reconnect rather than fail the call.
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:
                self.close()
        if self._connection is None:
            if self._ssl is not None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=min(self._timeout, 2.0), context=self._ssl
                )
            else:
                connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=min(self._timeout, 2.0)
                )
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self._timeout)  # connecting is short; answers may not be
            self._connection = connection
        return self._connection

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        query = urlencode(
            {"model": model, "save": "true" if save else "false", "frame_id": frame_id}
        )
        start = time.perf_counter_ns()
        path = f"{self._base}/v1/detect?{query}"
        return self._exchange(start, path, image, self._headers, _json_answer)

    def _exchange(self, start: int, path: str, body: bytes, headers: dict[str, str],
                  parse: Callable[[bytes], DetectionResult]) -> Reply:  # fmt: skip
        """POST ``body`` to ``path`` and ``parse`` the answer, timed from ``start``."""
        response = self._post(path, body, headers)
        received = time.perf_counter_ns()
        answer = response.body
        if response.status != 200:
            raise TransportError(
                "rejected", f"HTTP {response.status}: {_detail(answer, response.reason)}"
            )
        result = parse(answer)
        end = time.perf_counter_ns()
        return Reply(result, (end - start) / 1e6, len(body), len(answer), (end - received) / 1e6)

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One request on the kept-alive connection; the connection is dropped on any
        failure and when the server says it will close it."""
        if self._h2 is not None:
            return self._h2.post(path, body, headers)
        try:
            connection = self._connect()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            answer = response.read()
        except TimeoutError:
            self.close()
            raise TransportError("timeout", "no answer in time") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise TransportError("unreachable", first_line(exc) or type(exc).__name__) from None
        if response.will_close or self._new_connection:
            self.close()
        return Answer(response.status, response.reason, response.getheader, answer)

    def close(self) -> None:
        """Close the connection; safe from another thread. The shutdown wakes a read that is
        blocked on a stalled server (a plain close would not: the response holds the socket
        open), so quitting never waits for this transport's timeout."""
        if self._h2 is not None:
            self._h2.close()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)
        connection.close()


class RestMultipartTransport(RestTransport):
    """POST /v1/detect with the image as the multipart field ``file``, as a browser form
    or ``curl -F`` sends it."""

    name: ProtocolName = "rest-multipart"
    BOUNDARY = "facewire-multipart-boundary-7f3a9c"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        form = f"multipart/form-data; boundary={self.BOUNDARY}"
        self._headers = {**self._headers, "Content-Type": form}

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        head = (f"--{self.BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"frame.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()  # fmt: skip
        tail = f"\r\n--{self.BOUNDARY}--\r\n".encode()
        return super().detect(head + image + tail, model=model, save=save, frame_id=frame_id)


class RestProtobufTransport(RestTransport):
    """POST /v1/detect with a ``facewire.v1.DetectRequest`` as the body, and a
    ``DetectResponse`` asked for in return: gRPC's own messages on REST's transport
    (HTTP/1.1, one kept-alive connection), so that only the encoding differs from
    ``rest``. Encoding the message is on the clock, as decoding the answer is."""

    name: ProtocolName = "rest-protobuf"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        media = v1_proto.MEDIA_TYPES[0]
        self._headers = {**self._auth, "Content-Type": media, "Accept": media}

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        message = pb.DetectRequest(image=image, model=model, save=save, frame_id=frame_id)
        body = message.SerializeToString()
        return self._exchange(
            start, f"{self._base}/v1/detect", body, self._headers, _protobuf_answer
        )


class RestV2Transport(RestTransport):
    """POST /v2/models/<model>/infer with Triton's binary tensor data extension, both
    ways (``facewire.wire.v2_json``)."""

    name: ProtocolName = "rest-v2"
    #: Binary tensor data both ways; False: plain JSON (the image in base64, answers in
    #: JSON arrays), as a client without the extension sends it.
    binary = True

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        start = time.perf_counter_ns()
        request = core_request(image, model, save, frame_id)
        body, header_length = v2_json.encode_request(request, binary=self.binary)
        framing = {v2_json.HEADER_LENGTH: str(header_length)} if self.binary else {
            "Content-Type": "application/json"}  # fmt: skip
        headers = {**framing, **self._auth}
        path = f"{self._base}/v2/models/{inference.MODEL_NAMES[request.model]}/infer"
        response = self._post(path, body, headers)
        received = time.perf_counter_ns()
        answer = response.body
        if response.status != 200:
            detail = v2_json.decode_error(answer) or response.reason
            raise TransportError("rejected", f"HTTP {response.status}: {detail}")
        length = response.header(v2_json.HEADER_LENGTH)
        try:
            values, parameters = v2_json.decode_response(answer, int(length) if length else None)
            result = inference.from_outputs(values, request.model, frame_id, parameters)
        except (ValidationError, ValueError, KeyError, TypeError):
            raise TransportError("protocol", "the reply is not an inference answer") from None
        end = time.perf_counter_ns()
        return Reply(result, (end - start) / 1e6, len(body), len(answer), (end - received) / 1e6)


class RestV2JsonTransport(RestV2Transport):
    """The Open Inference Protocol over HTTP in plain JSON: no binary extension."""

    name: ProtocolName = "rest-v2-json"
    binary = False


def _json_answer(body: bytes) -> DetectionResult:
    try:
        return v1_json.json_to_result(v1_json.DetectResponse.model_validate_json(body))
    except ValidationError:
        raise TransportError("protocol", "the reply is not a facewire answer") from None


def _protobuf_answer(body: bytes) -> DetectionResult:
    try:
        return v1_proto.result_to_core(pb.DetectResponse.FromString(body))
    except (DecodeError, ValueError):
        raise TransportError("protocol", "the reply is not a DetectResponse") from None


def _detail(body: bytes, reason: str) -> str:
    """An error answer's ``detail``, else the HTTP reason phrase."""
    try:
        return v1_json.ErrorResponse.model_validate_json(body).detail
    except ValidationError:
        return reason
