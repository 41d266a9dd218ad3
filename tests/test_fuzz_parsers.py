"""Property tests over both parser adapters, in process, through the real request validation.

Each input is fed, in random read splits, to a real ``HTTPProtocol`` (real adapter, real
``on_request`` validation and scope) whose requests are recorded instead of being handed to an
app. Properties:

- any bytes: nothing but ``BadRequest`` ever leaves ``feed``, and both parsers agree;
- generated valid requests (pipelined, Content-Length or chunked, random splits): both parsers
  produce exactly the requests, headers and bodies the generator meant;
- mutated valid requests: both parsers agree on what reaches the app and on the refusal.

"Agree": both deliver exactly the same requests and bodies, and refuse with the same status. One
difference is allowed: llhttp refuses a bad byte as soon as it sees it, h11 often once the line
or head ends; then the other parser is still waiting, and ending the line and the head
(CRLF CRLF) must not make it accept a request.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastserve.config import Config
from fastserve.http1.connection import KNOWN_METHODS, HTTPProtocol
from fastserve.http1.errors import BadRequest
from fastserve.http1.h11_parser import H11Parser
from fastserve.http1.httptools_parser import HttptoolsParser
from fastserve.server import ServerState

PARSERS = {"httptools": HttptoolsParser, "h11": H11Parser}
CONFIG = Config(app="tests.apps.basic:app")
# Limits the generated requests cross often (up to 9 fields of up to ~40 bytes each).
TIGHT = Config(app="tests.apps.basic:app", limit_request_headers_size=50, limit_request_fields=6)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOAK = settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Handle:
    def cancel(self) -> None:
        pass


class _Loop:
    """The few loop calls a connection makes before an app runs (timers); none ever fires."""

    def time(self) -> float:
        return 0.0

    def call_at(self, when, callback, *args):
        return _Handle()

    call_later = call_at

    def call_soon(self, callback, *args):
        return _Handle()


class _Transport:
    """What connection_made asks of a transport; this harness never writes through it."""

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    resume_reading = pause_reading

    def is_closing(self) -> bool:
        return False


class RecordingConnection(HTTPProtocol):
    """A real HTTPProtocol, minus the app: each request that passes validation is recorded with
    the scope the app would get. The app is taken to answer at once, as most do, so h11 goes on
    to the next pipelined request; the end of a request that closes the connection stops the reading."""

    def __init__(self, parser_class: type, websocket: bool = False, config: Config = CONFIG) -> None:
        ws_handler = (lambda *args: None) if websocket else None  # upgrades taken: switch_protocols()
        super().__init__(config, None, ServerState(config, {}, None, ws_handler), parser_class, loop=_Loop())
        self.connection_made(_Transport())
        self.events: list[tuple] = []
        self.closed = self.last_closes = False

    def _start(self, cycle) -> None:
        s = cycle.scope
        self.events.append(("request", s["method"], s["raw_path"], s["query_string"], s["http_version"], tuple(s["headers"])))
        self.last_closes = not cycle.keep_alive  # the connection closes after this request
        if not self.last_closes and self.parser.wants_response_complete:
            self.parser.response_complete()

    def on_body(self, data: bytes) -> None:
        if self.events and self.events[-1][0] == "body":
            self.events[-1] = ("body", self.events[-1][1] + bytes(data))
        else:
            self.events.append(("body", bytes(data)))

    def on_message_complete(self) -> None:
        self.events.append(("complete",))
        self.closed = self.last_closes

    def switch_protocols(self, leftover: bytes) -> None:
        request, self.upgrade_request = self.upgrade_request, None
        self.events.append(("upgrade", request.raw_path, request.query_string, tuple(request.headers), bytes(leftover)))
        self.closed = True  # from here on the WebSocket session reads the connection


class Outcome:
    def __init__(self, conn: RecordingConnection, refused: int | None) -> None:
        self.conn = conn
        self.events = conn.events
        self.refused = refused  # the 4xx status, or None

    def __repr__(self) -> str:
        return f"Outcome(refused={self.refused}, events={self.events!r})"

    def feed(self, data: bytes) -> None:
        try:
            if not self.conn.closed:
                self.conn.parser.feed(data)
        except BadRequest as exc:
            self.refused = exc.status


def run(parser: str, data: bytes, cuts: list[int], websocket: bool = False, config: Config = CONFIG) -> Outcome:
    conn = RecordingConnection(PARSERS[parser], websocket, config)
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):
            if conn.closed:
                if conn.events[-1][0] == "upgrade":  # later reads go to the WebSocket session
                    conn.events[-1] = (*conn.events[-1][:-1], conn.events[-1][-1] + data[start:])
                break
            if end > start:
                conn.parser.feed(data[start:end])
    except BadRequest as exc:
        assert 400 <= exc.status < 500, exc
        return Outcome(conn, exc.status)
    return Outcome(conn, None)


def assert_agree(data: bytes, cuts: list[int], websocket: bool = False, config: Config = CONFIG) -> tuple[Outcome, Outcome]:
    a, b = run("httptools", data, cuts, websocket, config), run("h11", data, cuts, websocket, config)
    context = f"\ninput={data!r}\ncuts={cuts}\nhttptools={a}\nh11      ={b}"
    assert a.events == b.events, "the parsers delivered different requests" + context
    if (a.refused is None) != (b.refused is None):
        # One refused, the other is waiting for more bytes (llhttp refuses a bad byte at once,
        # h11 a bad line once it ends): ending the line and the head must not make it accept.
        waiting = b if a.refused is not None else a
        delivered = len(waiting.events)
        waiting.feed(b"\r\n\r\n")
        assert ("complete",) not in waiting.events[delivered:], (
            "one parser refused what the other accepts" + context + f"\nafter CRLF CRLF: {waiting}")
    elif a.refused is not None:
        assert a.refused == b.refused, "different refusals" + context
    return a, b


cuts_for = st.lists(st.integers(min_value=1, max_value=4000), max_size=6)

# -- (a) arbitrary bytes ------------------------------------------------------------------------
HTTPISH = [
    b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"CONNECT ", b"PRI ", b"get ", b"/", b"/a?b=c", b"*",
    b"http://x/", b" HTTP/1.1", b" HTTP/1.0", b" HTTP/2.0", b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b",", b";",
    b"Host: x", b"Host:", b"Content-Length: ", b"Transfer-Encoding: ", b"chunked", b"Connection: ",
    b"close", b"keep-alive", b"Upgrade: ", b"websocket", b"h2c", b"Expect: 100-continue", b"X-A: b",
    b"0", b"5", b"a", b"F", b"ff", b"\x00", b"\x7f", b"\xff", b"hello", b"\r\n\r\n", b"0\r\n\r\n",
    b"5\r\nhello\r\n", b"5;x=y\r\n", b"\"",
]
httpish = st.lists(st.sampled_from(HTTPISH), max_size=40).map(b"".join)


def _check_any(data: bytes, cuts: list[int]) -> None:
    # run() lets anything but BadRequest escape, and assert_agree holds both parsers together.
    assert_agree(data, cuts)


@FAST
@given(st.binary(max_size=300), cuts_for)
def test_arbitrary_bytes_only_ever_raise_bad_request(data, cuts):
    _check_any(data, cuts)


@FAST
@given(httpish, cuts_for)
def test_http_like_bytes_only_ever_raise_bad_request(data, cuts):
    _check_any(data, cuts)


# -- (b) valid requests -------------------------------------------------------------------------
TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Header names the server or llhttp act on are left to dedicated tests.
SPECIAL = {"host", "content-length", "transfer-encoding", "connection", "proxy-connection", "expect", "upgrade",
           "keep-alive", "forwarded", "x-forwarded-for", "x-forwarded-proto"}
METHODS = sorted(m for m in KNOWN_METHODS.values() if m != "CONNECT")
PCHAR = "abcXYZ019-._~!$&'()*+,;=:@"
HEX = "0123456789ABCDEFabcdef"

pct = st.tuples(st.sampled_from(HEX), st.sampled_from(HEX)).map(lambda t: "%" + t[0] + t[1])
segment = st.lists(st.one_of(st.sampled_from(PCHAR), pct), max_size=8).map("".join)
path = st.lists(segment, min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
query = st.lists(st.one_of(st.sampled_from(PCHAR + "/?"), pct), max_size=10).map("".join)
header_name = st.text(TOKEN, min_size=1, max_size=12).filter(lambda n: n.lower() not in SPECIAL)
vchar = st.one_of(st.integers(0x21, 0x7E), st.integers(0x80, 0xFF)).map(lambda c: bytes([c]))
inner = st.one_of(vchar, st.sampled_from([b" ", b"\t"]))
header_value = st.one_of(
    st.just(b""),
    st.tuples(vchar, st.lists(inner, max_size=10), vchar).map(lambda t: t[0] + b"".join(t[1]) + t[2]),
    vchar,
)
ows = st.sampled_from([b"", b" ", b"  ", b"\t", b" \t"])
chunk_ext = st.sampled_from([b"", b";a", b";a=b", b";name=\"quoted value\"", b";a=b;c", b";x=\"\\\"\""])


@st.composite
def requests(draw):
    """One valid request: its bytes, the events a parser must give, and whether it keeps the
    connection open."""
    method = draw(st.sampled_from(METHODS))
    target = draw(path) + (("?" + draw(query)) if draw(st.booleans()) else "")
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    fields = [(draw(header_name), draw(ows), draw(header_value), draw(ows)) for _ in range(draw(st.integers(0, 5)))]
    fields.insert(draw(st.integers(0, len(fields))), ("Host", b" ", b"example.com", b""))
    keep_alive = version == "1.1"
    if draw(st.integers(0, 4)) == 0:
        if version == "1.1":
            fields.append(("Connection", b" ", b"close", b""))
            keep_alive = False
        else:
            fields.append(("Connection", b" ", b"keep-alive", b""))
            keep_alive = True
    body = draw(st.binary(max_size=40)) if draw(st.booleans()) else b""
    framing = draw(st.sampled_from(["length", "chunked"] if version == "1.1" else ["length"]))
    encoded = b""
    if framing == "length" and (body or draw(st.booleans())):
        fields.append(("Content-Length", b" ", str(len(body)).encode(), b""))
        encoded = body
    elif framing == "chunked":
        fields.append(("Transfer-Encoding", b" ", b"chunked", b""))
        rest = body
        while rest:
            size = draw(st.integers(1, len(rest)))
            digits = draw(st.sampled_from(["%x", "%X", "%03x"])) % size
            encoded += digits.encode() + draw(chunk_ext) + b"\r\n" + rest[:size] + b"\r\n"
            rest = rest[size:]
        encoded += b"0" + draw(chunk_ext) + b"\r\n"
        if draw(st.booleans()):
            encoded += b"X-Trailer: " + draw(header_value) + b"\r\n"
        encoded += b"\r\n"
    head = f"{method} {target} HTTP/{version}\r\n".encode()
    head += b"".join(name.encode() + b":" + lead + value + trail + b"\r\n" for name, lead, value, trail in fields)
    data = head + b"\r\n" + encoded
    headers = tuple((name.lower().encode(), value) for name, _, value, _ in fields)
    expected = [("request", method, target.partition("?")[0].encode(), target.partition("?")[2].encode(), version, headers)]
    if body:
        expected.append(("body", body))
    expected.append(("complete",))
    return data, expected, keep_alive


@st.composite
def pipelines(draw):
    """1-3 pipelined requests, maybe with empty lines between them; the events expected (none
    after a request that ends the connection)."""
    data, expected = b"", []
    for _ in range(draw(st.integers(1, 3))):
        raw, events, keep_alive = draw(requests())
        data += raw + draw(st.sampled_from([b"", b"", b"\r\n"]))
        expected += events
        if not keep_alive:
            break
    return data, expected


def _check_valid(pipeline, cuts):
    data, expected = pipeline
    for parser in PARSERS:
        outcome = run(parser, data, cuts)
        assert outcome.refused is None, f"{parser} refused a valid request: {outcome}\ninput={data!r}"
        assert outcome.events == expected, f"{parser}: {outcome.events!r}\n!= {expected!r}\ninput={data!r}"


@FAST
@given(pipelines(), cuts_for)
def test_valid_requests_give_the_same_events_on_both_parsers(pipeline, cuts):
    _check_valid(pipeline, cuts)


@FAST
@given(pipelines(), st.lists(st.integers(min_value=1, max_value=300), max_size=8))  # (cuts within a few heads)
# The first read ends with a whole field (Host) known and the next begun: it is counted only when
# the read ends, and the head crosses the limit in the second read.
@example((b"GET / HTTP/1.1\r\nHost: example.com\r\nAbcdefghijkl: abcdefghij\r\nB: c\r\n\r\n", []), [37])
def test_header_limits_are_judged_alike_whatever_the_reads(pipeline, cuts):
    """Tight --limit-request-headers-size and --limit-request-fields: both parsers refuse (431)
    or accept alike, and the httptools adapter, which adds the fields' bytes up only where a read
    could cross the limit, judges the requests as it does when they come in one read."""
    _check_limits(pipeline, cuts)


def _check_limits(pipeline, cuts):
    data, _ = pipeline
    a, _ = assert_agree(data, cuts, config=TIGHT)
    whole = run("httptools", data, [], config=TIGHT)
    assert (a.refused, a.events) == (whole.refused, whole.events), f"cuts {cuts}: {a}\none read: {whole}\ninput={data!r}"


# -- (c) mutated valid requests -----------------------------------------------------------------
INTERESTING = [b" ", b"\t", b"\r", b"\n", b"\r\n", b"\x00", b":", b";", b",", b"=", b"\"", b"0", b"9", b"a", b"F",
               b"-", b"+", b"\x7f", b"\x80", b"\xff", b"\x0b", b"/", b"?", b"%", b"#", b"chunked", b"Host: y\r\n"]


@st.composite
def mutated(draw, base=None):
    data, _ = draw(base if base is not None else pipelines())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(INTERESTING), st.binary(min_size=1, max_size=2)))
        if kind == "insert":
            data = data[:at] + piece + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 3)):]
        else:
            data = data[:at] + piece + data[at + len(piece):]
    return data


@FAST
@given(mutated(), cuts_for)
def test_mutated_requests_are_judged_alike(data, cuts):
    assert_agree(data, cuts)


# -- WebSocket upgrades --------------------------------------------------------------------------
@st.composite
def upgrades(draw):
    """Maybe some pipelined requests, then a WebSocket upgrade, then bytes for the session."""
    data, expected = b"", []
    for _ in range(draw(st.integers(0, 2))):
        raw, events, keep_alive = draw(requests())
        if not keep_alive:
            break  # nothing is read after a request that closes the connection
        data, expected = data + raw, expected + events
    target = draw(path).encode()
    fields = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
              (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"sec-websocket-version", b"13")]
    fields = draw(st.permutations(fields))
    head = b"GET " + target + b" HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"
    after = draw(st.binary(max_size=60))
    return data + head + after, expected + [("complete",), ("upgrade", target, b"", tuple(fields), after)]


def _check_upgrade(case, cuts):
    data, expected = case
    for parser in PARSERS:
        outcome = run(parser, data, cuts, websocket=True)
        assert outcome.refused is None and outcome.events == expected, f"{parser}: {outcome}\ninput={data!r}"


@FAST
@given(upgrades(), cuts_for)
def test_upgrade_hands_the_same_bytes_to_the_websocket_session(case, cuts):
    _check_upgrade(case, cuts)


@FAST
@given(st.deferred(lambda: mutated(upgrades())), cuts_for)
def test_mutated_upgrades_are_judged_alike(data, cuts):
    assert_agree(data, cuts, websocket=True)


# -- soak variants (make soak) ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(1800)
@SOAK
@given(st.one_of(st.binary(max_size=600), httpish), cuts_for)
def test_soak_any_bytes(data, cuts):
    _check_any(data, cuts)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@SOAK
@given(pipelines(), cuts_for)
def test_soak_valid_requests(pipeline, cuts):
    _check_valid(pipeline, cuts)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@settings(SOAK, max_examples=20000)
@given(mutated(), cuts_for)
def test_soak_mutated_requests(data, cuts):
    assert_agree(data, cuts)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@SOAK
@given(pipelines(), st.lists(st.integers(min_value=1, max_value=300), max_size=8))
def test_soak_header_limits(pipeline, cuts):
    _check_limits(pipeline, cuts)


# -- shapes the fuzzers found, kept as plain examples --------------------------------------------
FOUND = {
    "leading empty lines": b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "double spaces in the request line": b"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n",
    "empty line after a body": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "trailing whitespace in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: b \t\r\n\r\n",
    "data after Connection: close": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/1.0 keep-alive pipelined": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    "HTTP/1.0 pipelined without keep-alive": b"GET / HTTP/1.0\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    "trailer before a pipelined request": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                           b"0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "Proxy-Connection: close": b"GET / HTTP/1.1\r\nHost: x\r\nProxy-Connection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "Connection: closed": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "close, then keep-alive": b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/1.0 keep-alivex": b"GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
}


@pytest.mark.parametrize("name", list(FOUND))
def test_found_shapes_agree(name):
    for cuts in ([], [1], [3, 17], list(range(1, len(FOUND[name])))):
        a, _ = assert_agree(FOUND[name], cuts)
        assert a.refused is None and a.events, a


@pytest.mark.slow
@pytest.mark.timeout(1800)
@SOAK
@given(st.one_of(upgrades(), mutated(upgrades()).map(lambda d: (d, None))), cuts_for)
def test_soak_upgrades(case, cuts):
    if case[1] is None:
        assert_agree(case[0], cuts, websocket=True)
    else:
        _check_upgrade(case, cuts)
