"""systemd socket activation (``LISTEN_FDS``/``LISTEN_PID``, sd_listen_fds(3)).

When systemd (or ``systemd-socket-activate``) starts fastserve with listening sockets, they are
file descriptors 3, 4, ... and ``LISTEN_PID`` names this process. fastserve serves them instead of
binding, like ``--fd`` for each, and removes the variables so that no child process takes them for
its own.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger("fastserve.error")

SD_LISTEN_FDS_START = 3


class ActivationError(OSError):
    """LISTEN_FDS names something fastserve cannot serve."""


def systemd_sockets() -> list[socket.socket] | None:
    """The sockets systemd passed to this process, or None when it passed none."""
    count, pid = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    if not count or pid != str(os.getpid()):
        return None
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not count.isdigit() or int(count) < 1:
        raise ActivationError(f"LISTEN_FDS={count!r} is not a positive number of sockets")
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise ActivationError(f"LISTEN_FDS: file descriptor {fd} is not a socket ({exc.strerror or exc})") from None
        if sock.type != socket.SOCK_STREAM:
            raise ActivationError(f"LISTEN_FDS: file descriptor {fd} is not a stream socket (ListenStream= in the .socket unit)")
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.set_inheritable(True)
        sockets.append(sock)
    logger.info("Using %d socket(s) from systemd (LISTEN_FDS)", len(sockets))
    return sockets
