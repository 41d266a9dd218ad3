"""The HTTP/1.1 ResponseSink (http1/writer.py) with a list standing in for the wire: it renders
the decisions a cycle made (status, validated headers, keep-alive, HTTP/1.0, HEAD) into bytes.
Behaviour through a real connection is in test_inprocess_http.py and test_http.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fastserve.asgi.errors import InvalidResponse
from fastserve.http1.writer import H1Writer


class Wire:
    """A HeldWriter stand-in: records what would reach the transport, and how."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.writes.append(("held", bytes(data)))

    def write_now(self, data: bytes) -> None:
        self.writes.append(("now", bytes(data)))

    def writelines(self, items) -> None:
        self.writes.append(("held", b"".join(items)))

    def data(self) -> bytes:
        return b"".join(data for _, data in self.writes)


class State:
    default_headers = b"server: fastserve\r\n"

    def defaults_without(self, headers) -> bytes:
        return b""


class Cycle:
    """The response facts a cycle hands its sink."""

    def __init__(self, **facts) -> None:
        self.keep_alive, self.http_version, self.is_head, self.no_body = True, "1.1", False, False
        self.expected_length, self.response_headers = None, ()
        self.__dict__.update(facts)


def sink_and_wire():
    wire = Wire()
    return H1Writer(wire, State()), wire


def head(status=200, block=b"content-type: text/plain\r\n", sets_defaults=False, chunked=False, closes=False):
    """As the cycle builds it: (status, the HEADS rendering, the app sets server or date)."""
    return (status, (block, chunked, closes), sets_defaults)


def test_one_message_response_is_one_write_with_its_length():
    sink, wire = sink_and_wire()
    sink.send_head(Cycle(), head(), b"hello", True)
    assert wire.writes == [("held", b"HTTP/1.1 200 OK\r\nserver: fastserve\r\ncontent-type: text/plain\r\n"
                                    b"content-length: 5\r\n\r\nhello")]


def test_streamed_body_is_chunked_and_each_part_goes_out_at_once():
    sink, wire = sink_and_wire()
    cycle = Cycle()
    sink.send_head(cycle, head(), b"ab", False)
    sink.send_body(cycle, b"", False)  # nothing to frame: no write
    sink.send_body(cycle, b"cd", True)
    assert sink.can_end_body(cycle) and [how for how, _ in wire.writes] == ["now", "held"]
    assert wire.data().endswith(b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n")


def test_whether_a_body_is_chunked_is_decided_again_for_each_response():
    """The writer, not the cycle, remembers a chunked body: the next response on the connection
    (streamed with its content-length) must not be framed in chunks."""
    sink, wire = sink_and_wire()
    sink.send_head(Cycle(), head(), b"ab", False)
    sink.send_body(Cycle(), b"", True)
    wire.writes.clear()
    sized = Cycle(expected_length=4)
    sink.send_head(sized, head(block=b"content-length: 4\r\n"), b"ab", False)
    sink.send_body(sized, b"cd", True)
    assert not sink.can_end_body(sized) and wire.data().endswith(b"content-length: 4\r\n\r\nabcd")


def test_http10_streamed_body_ends_with_the_connection():
    sink, wire = sink_and_wire()
    cycle = Cycle(http_version="1.0")
    sink.send_head(cycle, head(), b"ab", False)
    assert not cycle.keep_alive and b"connection: close\r\n" in wire.data() and b"chunked" not in wire.data()


def test_http10_keep_alive_says_so():
    sink, wire = sink_and_wire()
    sink.send_head(Cycle(http_version="1.0"), head(), b"ab", True)
    assert b"content-length: 2\r\nconnection: keep-alive\r\n\r\nab" in wire.data()


def test_head_response_has_the_length_but_no_body():
    sink, wire = sink_and_wire()
    sink.send_head(Cycle(is_head=True, no_body=True), head(), b"hello", True)
    assert wire.data().endswith(b"content-length: 5\r\n\r\n")


def test_the_apps_connection_close_is_not_doubled():
    sink, wire = sink_and_wire()
    cycle = Cycle()
    sink.send_head(cycle, head(block=b"connection: close\r\n", closes=True), b"x", True)
    assert wire.data().count(b"connection: close") == 1 and not cycle.keep_alive


def test_continue_error_and_abort():
    sink, wire = sink_and_wire()
    cycle = Cycle()
    sink.send_informational(cycle, 100, ())
    sink.send_error(cycle, 503, "Service Unavailable", ((b"retry-after", b"1"),))
    assert wire.writes[0] == ("now", b"HTTP/1.1 100 Continue\r\n\r\n")
    assert wire.writes[1][1].startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 1\r\nconnection: close\r\n" in wire.writes[1][1] and not cycle.keep_alive
    other = Cycle()
    sink.abort(other)
    assert not other.keep_alive


def test_a_body_that_is_not_bytes_is_an_invalid_response():
    sink, wire = sink_and_wire()
    with pytest.raises(InvalidResponse):
        sink.send_head(Cycle(), head(), "text", True)
    with pytest.raises(InvalidResponse):
        sink.send_head(Cycle(keep_alive=False), head(), "text", True)
    assert wire.writes == []


def test_capabilities_are_the_four_extensions():
    sink, _ = sink_and_wire()
    assert sink.capabilities == frozenset({"trailers", "early_hint", "pathsend", "zerocopysend"})


TE_TRAILERS = [(b"host", b"x"), (b"te", b"gzip;q=0.5, Trailers")]
FIELDS = [(b"x-checksum", b"abc"), (b"server-timing", b"db;dur=5")]


def test_trailer_section_ends_a_chunked_body_when_the_request_took_trailers():
    sink, wire = sink_and_wire()
    cycle = Cycle(headers=TE_TRAILERS)
    sink.send_head(cycle, head(), b"ab", False)
    sink.send_trailers(cycle, FIELDS)
    assert wire.data().endswith(b"2\r\nab\r\n0\r\nx-checksum: abc\r\nserver-timing: db;dur=5\r\n\r\n")
    assert wire.writes[-1][0] == "held"  # it completes the response: it may wait for the batch


@pytest.mark.parametrize(
    "facts, app_chunked, ending",
    [
        ({"headers": [(b"host", b"x")]}, False, b"2\r\nab\r\n0\r\n\r\n"),  # no TE: trailers
        ({"headers": [(b"te", b"gzip")]}, False, b"2\r\nab\r\n0\r\n\r\n"),
        ({"headers": [(b"te", b"trailersx")]}, False, b"2\r\nab\r\n0\r\n\r\n"),
        ({"headers": TE_TRAILERS, "expected_length": 2}, False, b"\r\n\r\nab"),  # content-length: complete
        ({"headers": TE_TRAILERS, "http_version": "1.0", "keep_alive": False}, False, b"\r\n\r\nab"),  # at close
        ({"headers": TE_TRAILERS, "http_version": "1.0"}, True, b"2\r\nab\r\n0\r\n\r\n"),
    ],
)
def test_trailers_are_dropped_where_they_cannot_go(facts, app_chunked, ending):
    sink, wire = sink_and_wire()
    cycle = Cycle(**facts)
    sink.send_head(cycle, head(chunked=app_chunked), b"ab", False)
    sink.send_trailers(cycle, FIELDS)
    assert wire.data().endswith(ending) and b"x-checksum" not in wire.data()


def test_early_hints_go_out_at_once_but_never_to_http10():
    sink, wire = sink_and_wire()
    sink.send_informational(Cycle(), 103, [(b"link", b"</a.css>; rel=preload"), (b"link", b"</b.js>")])
    assert wire.writes == [("now", b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n"
                                   b"link: </b.js>\r\n\r\n")]
    sink.send_informational(Cycle(http_version="1.0"), 103, [(b"link", b"</a.css>")])
    assert len(wire.writes) == 1


def test_a_response_before_the_request_body_keeps_alive_only_when_the_rest_can_be_drained():
    """HTTP/1.1's rule, the writer's (the shared cycle only says the response starts early)."""
    sink, _ = sink_and_wire()
    conn = SimpleNamespace(config=SimpleNamespace(limit_drain_body=100))
    drainable = Cycle(conn=conn, expect_100=False, body_left=100)
    sink.starts_before_body(drainable)
    assert drainable.keep_alive
    too_much = Cycle(conn=conn, expect_100=False, body_left=101)
    sink.starts_before_body(too_much)
    assert not too_much.keep_alive
    waits_for_100 = Cycle(conn=conn, expect_100=True, body_left=5)  # it may send the body or not
    sink.starts_before_body(waits_for_100)
    assert not waits_for_100.keep_alive
