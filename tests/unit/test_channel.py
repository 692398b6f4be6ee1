"""The worker channel: whole messages of any size both ways, EOF when the other end goes."""

from __future__ import annotations

import multiprocessing as mp
import threading

import numpy as np
import pytest

from streamer.pool.channel import SMALL_BYTES, Channel
from streamer.pool.wire import decode, encode


@pytest.fixture
def pair():
    a, b = mp.get_context("spawn").Pipe()
    left, right = Channel.adopt(a), Channel.adopt(b)
    yield left, right
    left.close()
    right.close()


def test_small_and_big_messages_arrive_whole_and_in_order(pair):
    left, right = pair
    crops = np.random.default_rng(0).integers(0, 255, (16, 256, 256, 3), dtype=np.uint8)  # 3 MiB
    sizes = [0, 1, SMALL_BYTES, SMALL_BYTES + 1]

    def write() -> None:
        for n in sizes:
            left.send(bytes(n))
        left.send(encode({"id": 7}, {"crops": crops}))

    writer = threading.Thread(target=write)
    writer.start()  # the big one does not fit the socket's buffer: it is read while written
    assert [len(right.recv()) for _ in sizes] == sizes
    meta, arrays = decode(right.recv())
    writer.join()
    assert meta == {"id": 7} and np.array_equal(arrays["crops"], crops)


def test_a_closed_end_reads_as_eof_and_close_wakes_a_blocked_reader(pair):
    left, right = pair
    left.close()
    with pytest.raises(EOFError):
        right.recv()
    a, b = mp.get_context("spawn").Pipe()
    reader, other = Channel.adopt(a), Channel.adopt(b)
    ended: list[type[BaseException]] = []

    def read() -> None:
        try:
            reader.recv()
        except (EOFError, OSError) as exc:  # OSError: closed before it started to read
            ended.append(type(exc))

    thread = threading.Thread(target=read)
    thread.start()
    reader.close()
    thread.join(10)
    other.close()
    assert not thread.is_alive() and ended
