"""Messages between the web process and a worker: length-prefixed frames on a socket pair.

multiprocessing's `Connection.recv_bytes` reads a big message in as many pieces as the socket
happens to hold, each copied into a growing buffer while holding the GIL: for the crops a worker
returns (megabytes a window) that was a fifth of the server's interpreter time while speaking.
Here a reader asks the kernel for the whole frame at once (`MSG_WAITALL`) into one buffer, and a
writer sends a big payload without joining it to its header.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from multiprocessing.connection import Connection

import numpy as np

_SIZE = struct.Struct("!Q")
SMALL_BYTES = 64 * 1024
"""Payloads up to this size go out in one write with their header."""


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def adopt(cls, conn: Connection) -> Channel:
        """Take over the socket under one end of a multiprocessing `Pipe` (which is how it
        reaches a spawned child); the `Connection` is closed."""
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        sock.setblocking(True)
        return cls(sock)

    def send(self, data: bytes) -> None:
        head = _SIZE.pack(len(data))
        if len(data) <= SMALL_BYTES:
            self._sock.sendall(head + data)
        else:
            self._sock.sendall(head)
            self._sock.sendall(data)

    def recv(self) -> memoryview:
        """The next message whole; EOFError when the other end has closed."""
        (size,) = _SIZE.unpack(self._exactly(_SIZE.size))
        return self._exactly(size)

    def _exactly(self, size: int) -> memoryview:
        view, got = np.empty(size, np.uint8).data, 0  # not zeroed: it is written over
        while got < size:
            n = self._sock.recv_into(view[got:], size - got, socket.MSG_WAITALL)
            if n == 0:
                raise EOFError("the other end closed the channel")
            got += n
        return view

    def close(self) -> None:
        """Close it; a thread blocked in `recv` wakes with EOFError."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
