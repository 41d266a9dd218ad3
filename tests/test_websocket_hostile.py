"""Hostile and careless WebSocket clients against a real server: each attack is bounded (server
RSS, a normal client's latency) and careless apps get clear errors."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zlib

import pytest
from websockets.asyncio.client import connect

from .wsclient import handshake_request
from .wsclient_h2 import H2_TRANSPORTS, H2Session, opened, start_target

PARSERS = ["httptools", "h11"]
# The careless-app tests: HTTP/1.1 on each parser, and HTTP/2 on each codec.
CARELESS = [("http1.1", (http, "auto")) for http in PARSERS] + [(t, ("httptools", "auto")) for t in H2_TRANSPORTS]
CARELESS_IDS = [f"http1.1-{http}" for http in PARSERS] + H2_TRANSPORTS


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def events(server) -> list[str]:
    with urllib.request.urlopen(f"{server.url}/events", timeout=5) as response:
        return json.loads(response.read())


# -- ASGI conformance of careless apps --------------------------------------------------------------
@pytest.fixture(params=CARELESS, ids=CARELESS_IDS)
def careless_target(request):
    target = start_target(request.param, app="apps.ws_hostile:app")
    yield target
    target.server.stop()


def test_send_with_both_text_and_bytes_is_an_error_in_the_app(careless_target):
    with opened(careless_target, "/ws/send-both") as ws:
        assert ws.recv() == "done"
    assert events(careless_target.server) == ["refused: RuntimeError"] * 3


def test_each_websocket_scope_has_its_own_asgi_and_extensions_dicts(careless_target):
    seen = []
    for _ in range(2):
        with opened(careless_target, "/ws/scope-write") as ws:
            seen.append(json.loads(ws.recv()))
    first, second = seen
    assert first == second, "what the first app wrote into its scope showed up in the next one"
    assert second["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert second["extensions"] == {"websocket.http.response": {}}


# -- the frame budget and the backlog keep every message, in order ----------------------------------
@pytest.mark.parametrize("http, loop, deflate", [("httptools", "uvloop", False), ("h11", "asyncio", True)])
def test_a_burst_of_messages_fragments_and_pings_is_echoed_whole_and_in_order(serve, http, loop, deflate):
    """Thousands of frames arrive in a few reads: parsing stops every FRAME_BUDGET frames, and when
    the queue fills, and goes on later from the same frame; nothing is lost or reordered."""
    server = serve("apps.ws_hostile:app", "--http", http, "--loop", loop, "--ws-max-queue", "8",
                   "--ws-max-queue-size", "4096")

    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/ws/echo", compression="deflate" if deflate else None) as ws:
            expected = []
            for i in range(3000):
                if i % 50 == 0:
                    parts = [f"{i}:a", f"{i}:b", f"{i}:c"]
                    await ws.send(iter(parts))  # a fragmented message
                    expected.append("".join(parts))
                elif i % 7 == 0:
                    await ws.send(b"%d" % i * 300)
                    expected.append(b"%d" % i * 300)
                else:
                    await ws.send(str(i))
                    expected.append(str(i))
                if i % 100 == 0:
                    await ws.ping(b"%d" % i)
            received = [await ws.recv() for _ in expected]
            return received == expected

    assert run(scenario())


@pytest.mark.parametrize("transport, deflate", [(t, t == "h2-h2") for t in H2_TRANSPORTS])
def test_a_burst_over_http2_is_echoed_whole_and_in_order(transport, deflate):
    """The burst above on a WebSocket over HTTP/2 (deflate on one codec): the frames come in DATA
    frames, many per read, against the same small queue; nothing is lost or reordered."""
    target = start_target((transport, ("httptools", "auto")), "--ws-max-queue", "8", "--ws-max-queue-size", "4096",
                          app="apps.ws_hostile:app")
    try:
        with opened(target, "/ws/echo", deflate=deflate) as ws:
            assert isinstance(ws, H2Session)
            assert bool(ws.ws.protocol.extensions) == deflate
            expected: list = []
            for i in range(3000):
                if i % 50 == 0:
                    parts = [f"{i}:a", f"{i}:b", f"{i}:c"]
                    ws.send_fragments(parts)
                    expected.append("".join(parts))
                elif i % 7 == 0:
                    ws.send(b"%d" % i * 300)
                    expected.append(b"%d" % i * 300)
                else:
                    ws.send(str(i))
                    expected.append(str(i))
                if i % 100 == 0:
                    ws.ws.send("send_ping", b"%d" % i)
            received = [ws.recv() for _ in expected]
            assert received == expected
    finally:
        target.server.stop()


# -- attacks: memory and fairness -----------------------------------------------------------------
MIB = 1 << 20


def rss_mib(server) -> float:
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """A client frame masked with the all-zero key (valid, and no per-byte work for big payloads)."""
    n = len(payload)
    first = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        return first + bytes([0x80 | n]) + b"\0\0\0\0" + payload
    if n < 65536:
        return first + bytes([0xFE]) + n.to_bytes(2, "big") + b"\0\0\0\0" + payload
    return first + bytes([0xFF]) + n.to_bytes(8, "big") + b"\0\0\0\0" + payload


CLOSE = frame(0x8, (1000).to_bytes(2, "big"))


class Attacker:
    """A raw WebSocket client that sends ``data`` from a thread (the server may stop reading, so
    the send may block) and never reads what the server sends."""

    def __init__(self, server, path: str, data: bytes, extra: str = "", wait_for_101: bool = True) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        handshake = handshake_request(path, extra=extra)
        if wait_for_101:
            self.sock.sendall(handshake)
            head = b""
            while b"\r\n\r\n" not in head:
                head += self.sock.recv(1)
            assert head.startswith(b"HTTP/1.1 101 "), head
            self.response_head = head.decode("latin-1")
        else:
            data = handshake + data
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._send, args=(data,), daemon=True)
        self.thread.start()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:  # the server closed the connection: the test says whether it may
            self.error = exc

    def finish(self, timeout: float = 20) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the attacker's data was never all read"

    def close(self) -> None:
        self.sock.close()


def peak_rss_while(server, seconds: float) -> float:
    """The server's highest RSS, sampled for ``seconds``."""
    peak, deadline = 0.0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, rss_mib(server))
        time.sleep(0.05)
    return peak


def warm_up(server) -> float:
    """One echo round trip (imports, first allocations), then the server's RSS."""
    async def scenario():
        async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
            await ws.send(b"x" * MIB)
            await ws.recv()

    run(scenario())
    return rss_mib(server)


@pytest.mark.parametrize("http", PARSERS)
def test_an_app_that_does_not_read_holds_a_bounded_number_of_bytes(serve, http):
    """32 x 16 MiB could be queued per connection; the queue is bounded in bytes too."""
    server = serve("apps.ws_hostile:app", "--http", http, "--timeout-graceful-shutdown", "1")
    before = warm_up(server)
    count, size, clients = 12, MIB, 4
    message = frame(0x2, b"m" * size)
    attackers = [Attacker(server, "/ws/hold?seconds=1.5", message * count + CLOSE) for _ in range(clients)]
    try:
        growth = peak_rss_while(server, 1.2) - before
        print(f"RSS growth while the app did not read: {growth:.1f} MiB ({clients} x {count} MiB sent)")
        assert growth < clients * count * size / MIB / 2, f"{growth:.0f} MiB held"
        for attacker in attackers:
            attacker.finish()  # once the app reads, everything gets through
        wait_until(lambda: len(events(server)) == clients, 10)
        assert events(server) == [f"hold: {count} messages, {count * size} bytes"] * clients
    finally:
        for attacker in attackers:
            attacker.close()


def wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("http", PARSERS)
def test_data_sent_before_the_accept_is_bounded(serve, http):
    """Frames sent right behind the handshake wait for the app's accept; only a little is kept."""
    server = serve("apps.ws_hostile:app", "--http", http, "--timeout-graceful-shutdown", "1")
    before = warm_up(server)
    count, size, clients = 12, MIB, 4
    data = frame(0x2, b"e" * size) * count + CLOSE
    attackers = [Attacker(server, "/ws/hold?accept_delay=1.5&seconds=0", data, wait_for_101=False) for _ in range(clients)]
    try:
        growth = peak_rss_while(server, 1.2) - before
        print(f"RSS growth before the accept: {growth:.1f} MiB ({clients} x {count} MiB sent)")
        assert growth < clients * count * size / MIB / 2, f"{growth:.0f} MiB held"
        for attacker in attackers:
            attacker.finish()  # after the accept, everything gets through
        wait_until(lambda: len(events(server)) == clients, 10)
        assert events(server) == [f"hold: {count} messages, {count * size} bytes"] * clients
    finally:
        for attacker in attackers:
            attacker.close()


@pytest.mark.parametrize("http, loop", [("httptools", "uvloop"), ("h11", "asyncio")])
def test_a_ping_flood_from_a_client_that_does_not_read_is_bounded(serve, http, loop):
    """Pongs a client never reads would pile up in the transport's write buffer: reading from it
    pauses instead, and the other clients are served."""
    server = serve("apps.ws_hostile:app", "--http", http, "--loop", loop, "--timeout-graceful-shutdown", "1")
    before = warm_up(server)
    pings = 250_000
    attacker = Attacker(server, "/ws/echo", frame(0x9, b"p" * 125) * pings)  # 131 bytes each: 31 MiB
    try:
        growth = peak_rss_while(server, 1.5) - before
        print(f"RSS growth during a ping flood: {growth:.1f} MiB ({pings} pings of 125 bytes, never read)")
        assert growth < 5, f"{growth:.0f} MiB held"

        async def normal_client():
            async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
                await ws.send("still served")
                return await ws.recv()

        assert run(normal_client(), 5) == "still served"
    finally:
        attacker.close()


def test_a_ping_flooder_that_never_reads_is_still_closed_by_the_keepalive_timeout(serve):
    """Reading from it pauses while its pongs are unread; the server's own ping is unanswered, and
    that is not excused as "the app is behind": the connection ends (1011) instead of hanging."""
    server = serve("apps.ws_hostile:app", "--ws-ping-interval", "0.3", "--ws-ping-timeout", "0.5",
                   "--timeout-graceful-shutdown", "1")
    start = len(server.lines)
    attacker = Attacker(server, "/ws/echo", frame(0x9, b"p" * 125) * 150_000)
    try:
        line = server.wait_for_line("did not answer a ping", timeout=5, start=start)
        assert line.startswith("INFO:"), line
    finally:
        attacker.close()


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99)]


@pytest.mark.parametrize("http, loop, deflate", [("httptools", "uvloop", False), ("h11", "asyncio", True)])
def test_a_message_of_tiny_fragments_does_not_starve_other_clients(serve, http, loop, deflate):
    """One connection sends a message in 1-byte fragments (7 bytes each on the wire): the work per
    turn of the event loop is bounded, so a normal client keeps its latency; the fragments are
    joined as they come, so they do not cost an object each."""
    server = serve("apps.ws_hostile:app", "--http", http, "--loop", loop, "--timeout-graceful-shutdown", "1")
    warm_up(server)
    peak_before = vm_hwm_mib(server)
    fragments = 1_000_000
    data = frame(0x2, b"f", fin=False) + frame(0x0, b"f", fin=False) * (fragments - 2) + frame(0x0, b"f") + CLOSE
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""

    async def scenario():
        latencies: list[float] = []
        async with connect(f"ws://127.0.0.1:{server.port}/ws/echo") as ws:
            async def round_trips():
                while True:
                    started = time.monotonic()
                    await ws.send("ping?")
                    await ws.recv()
                    latencies.append(time.monotonic() - started)
                    await asyncio.sleep(0.005)

            measuring = asyncio.create_task(round_trips())
            attacker = await asyncio.to_thread(Attacker, server, "/ws/hold?seconds=0", data, extra)
            del latencies[:]  # from the start of the attack to its end
            while not await asyncio.to_thread(events, server):
                await asyncio.sleep(0.1)
            measuring.cancel()
            attacker.close()
        return latencies

    latencies = run(scenario())
    growth = vm_hwm_mib(server) - peak_before
    print(f"normal client during the fragment flood: p99 {p99(latencies) * 1000:.1f} ms, max "
          f"{max(latencies) * 1000:.1f} ms ({len(latencies)} round trips); peak RSS +{growth:.1f} MiB")
    assert len(latencies) >= 10, "the attack was over too soon to measure anything: send more"
    assert p99(latencies) < 0.5
    assert growth < 24, f"a 1 MB message in 1-byte fragments took {growth:.0f} MiB"
    assert events(server) == [f"hold: 1 messages, {fragments} bytes"]


def vm_hwm_mib(server) -> float:
    with open(f"/proc/{server.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def deflate_bomb(inflated: int) -> bytes:
    """A permessage-deflate payload of ``inflated`` zero bytes (about 1000 times smaller)."""
    compressor = zlib.compressobj(wbits=-15)
    zeros = b"\0" * MIB
    payload = b"".join(compressor.compress(zeros) for _ in range(inflated // MIB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return payload[:-4]  # RFC 7692 7.2.1: without the empty block's tail


@pytest.mark.parametrize("http", PARSERS)
def test_deflate_bombs_inflate_no_more_than_max_size_and_leave_nothing_behind(serve, http):
    """Each bomb inflates to 64 x --ws-max-size: the server inflates at most --ws-max-size of it,
    closes with 1009, and frees that at once (it was held in a reference cycle, through the
    exception's traceback, until the cyclic garbage collector happened to run)."""
    max_size = 4 * MIB
    server = serve("apps.ws_hostile:app", "--http", http, "--ws-max-size", str(max_size), "--timeout-graceful-shutdown", "1")
    bomb = frame(0x2, deflate_bomb(64 * max_size), rsv=0x40)
    assert len(bomb) < max_size / 16
    before = warm_up(server)
    peak_before = vm_hwm_mib(server)
    extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    for _ in range(2):
        attackers = [Attacker(server, "/ws/hold?seconds=0", bomb, extra=extra) for _ in range(12)]
        for attacker in attackers:
            assert "permessage-deflate" in attacker.response_head.lower()
            attacker.sock.settimeout(10)
            close = attacker.sock.recv(4)
            assert close[0] == 0x88 and close[2:4] == (1009).to_bytes(2, "big"), close
            attacker.close()
    time.sleep(0.3)
    peak, after = vm_hwm_mib(server) - peak_before, rss_mib(server) - before
    print(f"24 deflate bombs of {64 * max_size // MIB} MiB: peak RSS +{peak:.0f} MiB, after +{after:.0f} MiB")
    assert peak < 8 * max_size / MIB, f"peak RSS +{peak:.0f} MiB"
    assert after < 4 * max_size / MIB, f"{after:.0f} MiB still held after the bombs"


def test_ws_max_queue_size_must_be_positive():
    result = subprocess.run([sys.executable, "-m", "fastserve", "apps.ws_hostile:app", "--ws-max-queue-size", "0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--ws-max-queue-size: must be positive" in result.stderr, result.stderr
