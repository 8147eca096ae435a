"""The batch collector: full batches from many threads, partial ones on demand, order kept."""

import threading

from filejobs.send.collect import BatchCollector


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def collector(**kw):
    flushed = []
    kw.setdefault("max_bytes", 10_000)
    kw.setdefault("size_of", lambda _: 1)
    return BatchCollector(flushed.append, **kw), flushed


def test_full_batches_of_ten_go_out_as_they_fill_and_the_rest_waits():
    c, flushed = collector()
    for i in range(25):
        c.add(i)
    assert flushed == [list(range(10)), list(range(10, 20))]
    c.flush_all()
    assert flushed[-1] == list(range(20, 25))


def test_the_last_item_in_flight_sends_the_partial_batch():
    c, flushed = collector()
    c.add("a")
    c.add("b", last=True)
    assert flushed == [["a", "b"]]


def test_a_batch_never_exceeds_the_byte_limit():
    c, flushed = collector(max_bytes=8, size_of=len)
    for item in ["aaaa", "bbbb", "cc", "dddd"]:
        c.add(item)
    c.flush_all()
    assert flushed == [["aaaa", "bbbb"], ["cc", "dddd"]]


def test_a_partial_batch_is_taken_only_once_it_has_lingered():
    clock = FakeClock()
    c, flushed = collector(clock=clock)
    c.add(1)
    clock.now = 0.5
    assert c.take_older(1.0) == []
    clock.now = 1.0
    assert c.take_older(1.0) == [1]
    assert c.take_older(1.0) == [] and flushed == []


def test_items_added_from_many_threads_each_go_out_exactly_once():
    c, flushed = collector()
    threads = [threading.Thread(target=lambda base=b: [c.add(base + i) for i in range(100)]) for b in range(0, 800, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.flush_all()
    assert sorted(i for batch in flushed for i in batch) == list(range(800))
    assert all(len(batch) == 10 for batch in flushed)
