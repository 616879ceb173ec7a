"""relay.net.share: who stands back, and when a worker stops waiting for the others."""

from __future__ import annotations

import pytest

from relay.net.share import ABSENT, AcceptBoard, AcceptShare


@pytest.fixture
def board(tmp_path):
    b = AcceptBoard(str(tmp_path / "board"), 3, create=True)
    yield b
    b.close()


def test_a_worker_ahead_of_the_least_loaded_stands_back(board, tmp_path):
    mine = AcceptShare(board, 0)
    other = AcceptShare(AcceptBoard(str(tmp_path / "board"), 3), 1)  # as a worker maps it
    try:
        assert not mine.ahead(5)  # slot 2 absent, slot 1 not published yet: nobody to wait for
        other.publish(3)
        assert not mine.ahead(4)  # one ahead: fine
        assert mine.ahead(5)
        assert not mine.moved()
        other.publish(4)  # the other took a client while we stood back
        assert mine.moved()
        other.publish(100)
        assert not mine.ahead(106) and mine.ahead(107)  # 1 + 5 % of 100 ahead is the limit
    finally:
        other.board.close()


def test_a_draining_worker_is_not_waited_for(board):
    mine, other = AcceptShare(board, 0), AcceptShare(board, 1)
    other.publish(0)
    assert mine.ahead(10)
    other.leave()
    assert board.values[1] == ABSENT and not mine.ahead(10)
    other.publish(0)  # after leave() it no longer writes
    assert board.values[1] == ABSENT
    assert not other.ahead(0)


def test_a_slot_outside_the_board_or_a_short_file_is_refused(board, tmp_path):
    with pytest.raises(ValueError):
        AcceptShare(board, 3)
    with pytest.raises(ValueError):
        AcceptBoard(str(tmp_path / "board"), 4)
