"""Frames on one long-lived gRPC ``DetectStream``, each answered in turn."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from client.transports.base import ProtocolName, Reply, TransportError
from client.transports.channel import GrpcChannel, detect_request, grpc_error, parse_answer, reply

_DETECT_STREAM = "/facewire.v1.FaceDetection/DetectStream"
_END = object()
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class Watchdog:
    """Calls ``expire`` when an armed deadline passes; one thread for a transport's life
    (a ``threading.Timer`` per request would start a thread inside the measured time)."""

    def __init__(self, expire: Callable[[], None]) -> None:
        self._expire = expire
        self._deadline: float | None = None
        self._closed = False
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="stream-watchdog", daemon=True).start()

    def arm(self, seconds: float) -> None:
        with self._changed:
            self._deadline = time.monotonic() + seconds
            self._changed.notify()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None  # no notify: the thread re-checks when it wakes anyway

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                if self._deadline is None:
                    self._changed.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    self._changed.wait(remaining)
                    continue
                self._deadline = None
                self._expire()


class GrpcStreamTransport(GrpcChannel):
    """Frames on one long-lived ``DetectStream``; a broken stream is reopened on next use."""

    name: ProtocolName = "grpc-stream"

    def _bind(self) -> None:
        self._stream: grpc.StreamStreamMultiCallable[bytes, bytes] = self._channel.stream_stream(
            _DETECT_STREAM
        )
        self._watchdog = Watchdog(self._cancel_call)
        self._outbox: queue.SimpleQueue[object] | None = None
        self._replies: Iterator[bytes] | None = None
        self._call: grpc.Call | None = None

    def _open(self) -> tuple[queue.SimpleQueue[object], Iterator[bytes]]:
        if self._outbox is None or self._replies is None:
            outbox: queue.SimpleQueue[object] = queue.SimpleQueue()

            def requests() -> Iterator[bytes]:
                while (item := outbox.get()) is not _END:
                    assert isinstance(item, bytes)
                    yield item

            call = self._stream(requests(), metadata=self._metadata)
            self._outbox, self._replies, self._call = outbox, call, call
        return self._outbox, self._replies

    def _reset(self) -> None:
        if self._outbox is not None:
            self._outbox.put(_END)
        if self._call is not None:
            self._call.cancel()
        self._outbox = self._replies = self._call = None

    def detect(self, image: bytes, *, model: str, save: bool, frame_id: str) -> Reply:
        outbox, replies = self._open()
        start = time.perf_counter_ns()
        request = detect_request(image, model, save, frame_id)
        # One stream has one deadline; a per-frame timeout cancels the stream instead.
        self._watchdog.arm(self._timeout)
        outbox.put(request)
        try:
            raw = next(replies)
        except grpc.RpcError as error:
            self._reset()
            raise grpc_error(error) from None
        except StopIteration:
            self._reset()
            raise TransportError("protocol", "the server ended the stream") from None
        finally:
            self._watchdog.disarm()
        received = time.perf_counter_ns()
        message = parse_answer(raw)
        if message.HasField("error"):
            code = _CODE_NAMES.get(message.error.code, "UNKNOWN")
            raise TransportError("rejected", f"{code}: {message.error.message}")
        return reply(request, raw, message, start, received)

    def _cancel_call(self) -> None:
        call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self._watchdog.close()
        self._reset()
        super().close()
