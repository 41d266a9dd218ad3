"""http2/semantics.py: a codec's RequestHeaders -> RequestHead or StreamError (pure functions)."""

from __future__ import annotations

import pytest

from fastserve.asgi.request import UNKNOWN_LENGTH
from fastserve.http2.codec import PROTOCOL_ERROR, RequestHeaders
from fastserve.http2.semantics import StreamError, request_head

CLIENT = ("192.0.2.1", 4000)


def head(method=b"GET", target=b"/", headers=(), end_stream=True, protocol=None, trusted=False):
    event = RequestHeaders(1, method, target, protocol, list(headers), end_stream)
    return request_head(event, CLIENT, "http", trusted)


def test_fields_and_host_first():
    h = head(target=b"/a%20b?x=1", headers=[(b"accept", b"*/*"), (b"host", b"example.com"), (b"cookie", b"a=1"),
                                            (b"cookie", b"b=2")])
    assert (h.method, h.path, h.raw_path, h.query_string, h.http_version) == ("GET", "/a b", b"/a%20b", b"x=1", "2")
    assert h.headers == [(b"host", b"example.com"), (b"accept", b"*/*"), (b"cookie", b"a=1; b=2")]
    assert (h.body_left, h.upgrade, h.is_head, h.forwarded) == (0, False, False, None)
    assert not hasattr(h, "keep_alive")  # HTTP/1.1's rule (http1/semantics.H1Head), not HTTP/2's


def test_body_lengths_and_expect():
    assert head(b"POST", end_stream=False).body_left == UNKNOWN_LENGTH
    h = head(b"POST", headers=[(b"content-length", b"12"), (b"expect", b"100-continue")], end_stream=False)
    assert (h.body_left, h.expect_100) == (12, True)
    assert not head(headers=[(b"expect", b"100-continue")]).expect_100  # no body to wait for
    assert head(b"HEAD").is_head


def test_trusted_proxy_headers_collected():
    h = head(headers=[(b"x-forwarded-for", b"203.0.113.1")], trusted=True)
    assert h.forwarded == {b"x-forwarded-for": b"203.0.113.1"}
    assert head(headers=[(b"x-forwarded-for", b"203.0.113.1")]).forwarded is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": b"relative"},
        {"target": b"*"},  # only for OPTIONS
        {"target": "/ä".encode()},
        {"method": b"GE T"},
        {"method": b"CONNECT"},
        {"headers": [(b"content-length", b"x")]},
        {"headers": [(b"content-length", b"1"), (b"content-length", b"2")], "end_stream": False},
        {"headers": [(b"content-length", b"5")]},  # a length, yet END_STREAM with the head
        {"headers": [(b"host", b"a"), (b"host", b"b")]},
    ],
)
def test_malformed_requests_are_stream_errors(kwargs):
    with pytest.raises(StreamError) as refused:
        head(**kwargs)
    assert refused.value.error_code == PROTOCOL_ERROR and refused.value.status is None


def test_options_asterisk_and_extended_connect():
    assert head(b"OPTIONS", b"*").raw_path == b"*"
    with pytest.raises(StreamError) as refused:
        head(b"CONNECT", protocol=b"websocket")
    assert refused.value.status == 501
