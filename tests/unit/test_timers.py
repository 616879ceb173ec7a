from relay.net.timers import TimerHeap


def test_timers_fire_in_deadline_order_and_ties_in_insertion_order():
    heap = TimerHeap()
    fired = []
    heap.add(3.0, lambda: fired.append("c"))
    heap.add(1.0, lambda: fired.append("a1"))
    heap.add(1.0, lambda: fired.append("a2"))
    heap.add(2.0, lambda: fired.append("b"))
    for timer in heap.pop_due(2.5):
        timer.callback()
    assert fired == ["a1", "a2", "b"]
    assert heap.next_deadline() == 3.0


def test_nothing_is_due_before_its_deadline():
    heap = TimerHeap()
    heap.add(5.0, lambda: None)
    assert heap.pop_due(4.999) == []
    assert len(heap.pop_due(5.0)) == 1


def test_cancelled_timers_never_fire_and_do_not_hold_the_deadline():
    heap = TimerHeap()
    early = heap.add(1.0, lambda: None)
    late = heap.add(9.0, lambda: None)
    early.cancel()
    assert heap.next_deadline() == 9.0
    assert heap.pop_due(10.0) == [late]
    assert heap.next_deadline() is None


def test_empty_heap_has_no_deadline():
    assert TimerHeap().next_deadline() is None


def test_cancelled_long_timers_do_not_pile_up():
    # every session arms an idle timer of an hour and cancels it when it closes seconds
    # later: those entries must not stay in the heap for the hour
    heap = TimerHeap()
    keep = heap.add(7200.0, lambda: None)
    for i in range(10_000):
        heap.add(3600.0 + i, lambda: None).cancel()
    assert len(heap) == 1
    assert len(heap.entries) <= 2 * 256 + 2  # rebuilt whenever cancelled entries are the majority
    assert heap.next_deadline() == 7200.0
    assert heap.pop_due(8000.0) == [keep]


def test_cancel_after_firing_or_twice_keeps_the_count_right():
    heap = TimerHeap()
    timers = [heap.add(float(i), lambda: None) for i in range(600)]
    for timer in heap.pop_due(299.0):  # 0..299 fire
        timer.cancel()  # cancelling a timer that already fired changes nothing
    for timer in timers[300:]:
        timer.cancel()
        timer.cancel()
    assert len(heap) == 0
    assert heap.next_deadline() is None
    assert heap.entries == [] and heap.cancelled == 0


def test_the_heap_reads_its_own_clock_when_not_told_the_time():
    from tests.support.fakeclock import FakeClock

    clock = FakeClock(100.0)
    heap = TimerHeap(clock)
    fired = []
    heap.add_later(2.0, lambda: fired.append("a"))
    assert heap.next_deadline() == 102.0
    clock.advance(1.999)
    assert heap.pop_due() == []
    clock.advance(0.001)
    for timer in heap.pop_due():
        timer.callback()
    assert fired == ["a"] and len(heap) == 0


def test_equal_deadlines_keep_insertion_order_through_compaction_and_later_adds():
    heap = TimerHeap()
    fired: list[int] = []
    timers = [heap.add(5.0, lambda i=i: fired.append(i)) for i in range(2000)]
    for i, timer in enumerate(timers):
        if i % 4:  # three of four cancelled: the heap is rebuilt on the way (compact)
            timer.cancel()
    assert len(heap.entries) < 2000  # compacted
    later = [heap.add(5.0, lambda i=i: fired.append(i)) for i in range(2000, 2100)]
    heap.add(4.0, lambda: fired.append(-1))
    assert len(heap) == 500 + len(later) + 1
    for timer in heap.pop_due(5.0):
        timer.callback()
    assert fired == [-1, *range(0, 2000, 4), *range(2000, 2100)]
