"""Response-head validation (asgi/response_head.py, no wire format) apart from its HTTP/1.1
rendering (http1/render.py). End-to-end behaviour is in test_asgi_messages.py."""

from __future__ import annotations

import pytest

from fastserve.asgi.errors import InvalidResponse
from fastserve.asgi.response_head import (
    ResponseHeadCache,
    check_status,
    validate_headers,
    validate_links,
    validate_trailers,
)
from fastserve.http1.render import HEADS, render_headers, status_line


def test_validation_reads_what_the_server_acts_on_and_drops_framing():
    items, length, chunked, closes, sets_defaults = validate_headers(
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked"),
         (b"Connection", b"Close"), (b"Server", b"app")]
    )
    assert items == [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), (b"Connection", b"Close"),
                     (b"Server", b"app")]
    assert (length, chunked, closes, sets_defaults) == (5, True, True, True)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([(b"bad name", b"x")], "invalid response header name"),
        ([(b"x", b"a\r\nb")], "CR, LF or NUL"),
        ([(b"x", b"a\0b")], "CR, LF or NUL"),
        ([(b"x", "text")], "must be bytes"),
        ([(b"content-length", b"-1")], "invalid content-length"),
    ],
)
def test_invalid_headers(headers, message):
    with pytest.raises(InvalidResponse, match=message):
        validate_headers(headers)


def test_status_codes():
    assert check_status(299) == 299 and status_line(299) == b"HTTP/1.1 299 \r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    for bad in (99, 1000, 200.0, "200"):
        with pytest.raises(InvalidResponse):
            check_status(bad)


def test_http1_rendering_and_its_cache():
    headers = ((b"content-type", b"text/plain"), (b"transfer-encoding", b"chunked"))
    (block, chunked, closes), length, _ = HEADS.get(headers)
    assert block == b"content-type: text/plain\r\n" and length is None and chunked and not closes
    assert headers in HEADS.entries  # cached (compiled, get() returns an equal tuple, not the same one)
    assert render_headers([(b"a", b"1"), (b"b", b"2")]) == b"a: 1\r\nb: 2\r\n"


def test_the_cache_is_bounded_and_takes_lists():
    cache = ResponseHeadCache(lambda items, chunked, closes: render_headers(items), size=2, longest=20)
    for i in range(5):
        cache.get(((b"x", b"%d" % i),))
    cache.get(((b"x", b"y" * 50),))
    assert len(cache.entries) == 2
    assert cache.get(([b"x", b"1"],))[0] == b"x: 1\r\n"  # pairs as lists: valid, not cached
    assert len(cache.entries) == 2


def test_trailer_fields_follow_the_header_rules_less_the_fields_a_trailer_may_not_carry():
    fields = [(b"X-Checksum", b"abc"), (b"server-timing", b"db;dur=5")]
    assert validate_trailers(fields) == fields
    assert validate_trailers(iter(fields)) == fields  # any iterable, read once
    for name in (b"Content-Length", b"transfer-encoding", b"host", b"connection", b"te", b"trailer", b"set-cookie"):
        with pytest.raises(InvalidResponse, match="may not be sent as a trailer field"):
            validate_trailers([(name, b"1")])
    for bad in ([(b"bad name", b"1")], [(b"x", b"a\nb")], [(b"x", "s")], [("x", b"1")], [(b"x",)], None, [None]):
        with pytest.raises(InvalidResponse):
            validate_trailers(bad)


def test_early_hint_links_are_an_iterable_of_clean_bytes():
    assert validate_links((b"</a.css>; rel=preload",)) == [b"</a.css>; rel=preload"]
    assert validate_links([]) == []
    for bad in (b"</a.css>", "</a.css>", ["</a.css>"], [b"</a>\r\nx: 1"], [b"\0"], None, 5):
        with pytest.raises(InvalidResponse):
            validate_links(bad)
