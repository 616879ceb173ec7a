"""The copy path's buffer pool: the scratch buffer, its cached heads, take and release."""

from __future__ import annotations

from relay.net.buffers import HEADS, BufferPool


def test_head_is_the_scratch_prefix_and_the_same_view_each_time() -> None:
    pool = BufferPool(size=HEADS * 2)
    pool.scratch[:5] = b"hello"
    first = pool.head(5)
    assert bytes(first) == b"hello"
    assert pool.head(5) is first  # made once per length
    pool.scratch[:5] = b"HELLO"  # a view, not a copy: the next read shows through
    assert bytes(pool.head(5)) == b"HELLO"
    assert len(pool.head(0)) == 0


def test_long_heads_are_not_cached() -> None:
    pool = BufferPool(size=HEADS * 2)
    pool.scratch[HEADS:HEADS + 1] = b"x"
    view = pool.head(HEADS + 1)
    assert len(view) == HEADS + 1 and bytes(view[-1:]) == b"x"
    assert pool.head(HEADS + 1) is not view
    assert len(pool.head(HEADS * 2)) == HEADS * 2


def test_after_take_heads_are_of_the_new_scratch() -> None:
    pool = BufferPool(size=64)
    pool.scratch[:3] = b"old"
    before = pool.head(3)
    kept = pool.take()  # a session keeps the bytes it could not send yet
    assert bytes(kept[:3]) == b"old" and pool.in_use == 1
    pool.scratch[:3] = b"new"
    after = pool.head(3)
    assert after is not before
    assert bytes(after) == b"new"
    assert bytes(kept[:3]) == b"old"  # the session's bytes are untouched
    pool.release(kept)
    assert pool.in_use == 0
    assert pool.take() is not kept  # the scratch goes first; the released one waits idle
    assert pool.scratch is kept
