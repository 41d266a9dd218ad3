"""Frames that cost CPU but make no progress, counted per HTTP/2 connection (--http2-max-control-frames).

Each PING and SETTINGS needs an answer; PRIORITY, an empty DATA frame, an unsolicited ACK, a frame
on a stream that is over, a stream the codec refuses, or a WINDOW_UPDATE that lets no waiting
response send change nothing the server serves. A client may send a few (browsers: a handful of SETTINGS and
WINDOW_UPDATE; gRPC: a keep-alive PING every few seconds); one that sends them by the thousand
makes the server work for nothing (CVE-2019-9512 ping flood, 9515 settings flood, 9518 empty
frames, 9513 priority churn). Past the budget the connection ends with GOAWAY ENHANCE_YOUR_CALM.

What counts is chosen by the connection (connection.py, `_dispatch` and `_on_credit`); this
module only keeps the count. It is touched by control frames only, never by a request's HEADERS or DATA.
"""

from __future__ import annotations

# The budget is for this many seconds; the count starts again after it (like --http2-max-resets).
WINDOW = 10.0
# A WINDOW_UPDATE smaller than this is counted even when it lets a response go on: clients credit
# by the half window (kilobytes at least); single bytes only make the server send tiny frames.
MIN_USEFUL_CREDIT = 1024


class FrameBudget:
    """`limit` frames without progress per WINDOW seconds, per connection."""

    __slots__ = ("limit", "spent", "window_start")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0
        self.window_start = 0.0

    def spend(self, now: float, frames: int = 1) -> bool:
        """Count `frames` at time `now`; True once the budget is exceeded."""
        if now - self.window_start > WINDOW:
            self.window_start, self.spent = now, 0
        self.spent += frames
        return self.spent > self.limit

    def refund(self, frames: int) -> None:
        """Frames counted that turned out to be progress (see H2Connection._on_credit)."""
        self.spent = max(0, self.spent - frames)
