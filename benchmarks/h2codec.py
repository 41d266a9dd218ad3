"""The HTTP/2 codec adapters in process: µs per GET request, for each codec.

    python -m benchmarks.h2codec                    # both codecs, 5 runs of 4000 requests
    python -m benchmarks.h2codec --repeat 15

No sockets, no event loop: connections of at most 4000 requests (zttp 0.0.35 ends a connection
at its 4097th stream, see src/fastserve/http2/zttp_codec.py), timed past the preface; each
request is one HEADERS
frame (END_STREAM, HPACK-indexed after the first, as h2load sends them) fed with `receive_data`,
answered with `send_headers` (200, content-type, content-length) and `send_data` (13 bytes, END_STREAM),
then `data_to_send()`. This is the codec's share of a keep-alive GET, without the server around it.
The figure is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.metadata import version

import hpack
from hyperframe.frame import HeadersFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()
REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":path", b"/"),
    (b":authority", b"127.0.0.1:8000"),
    (b"user-agent", b"h2load nghttp2/1.64.0"),
]
RESPONSE = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
BODY = b"Hello, world!"


def request_frames(count: int) -> list[bytes]:
    encoder = hpack.Encoder()
    frames = []
    for n in range(count):
        frame = HeadersFrame(1 + 2 * n)
        frame.data = encoder.encode(REQUEST)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        frames.append(frame.serialize())
    return frames


def run(codec_cls, frames: list[bytes]) -> float:
    """µs per request over one connection."""
    codec = codec_cls()
    codec.initiate_connection()
    codec.receive_data(PREFACE)
    codec.data_to_send()
    receive, send_headers, send_data, data_to_send = (
        codec.receive_data,
        codec.send_headers,
        codec.send_data,
        codec.data_to_send,
    )
    start = time.perf_counter()
    for frame in frames:
        for event in receive(frame):
            stream_id = event.stream_id
            send_headers(stream_id, 200, RESPONSE)
            send_data(stream_id, BODY, True)
        data_to_send()
    return (time.perf_counter() - start) / len(frames) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="per connection, at most 4000")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not 0 < args.requests <= 4000:
        parser.error("--requests: 1 to 4000 (zttp's streams per connection)")
    frames = request_frames(args.requests)
    from fastserve.http2.h2_codec import H2Codec

    candidates = [("h2", H2Codec)]
    try:
        from fastserve.http2.zttp_codec import ZttpCodec
    except ImportError:
        print("zttp is not installed: h2 only")
    else:
        candidates.insert(0, ("zttp", ZttpCodec))
    for name, codec_cls in candidates:
        runs = [run(codec_cls, frames) for _ in range(args.repeat)]
        print(
            f"{name:5} {version(name):8} {statistics.median(runs):8.2f} µs per GET"
            f"  (min {min(runs):.2f}, max {max(runs):.2f}; {args.repeat} x {args.requests} requests)"
        )


if __name__ == "__main__":
    main()
