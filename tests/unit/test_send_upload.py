"""The in-process upload threads: every step worked on once, the walker held back and released."""

import threading

from filejobs.send.upload import UploadThreads


def test_every_queued_step_is_worked_on_once_before_close_returns():
    done, lock = [], threading.Lock()

    def work(step):
        with lock:
            done.append(step)

    pool = UploadThreads(4, work, stopping=lambda: False)
    for i in range(100):
        assert pool.put(i)
    pool.close()
    assert sorted(done) == list(range(100))


def test_put_waits_while_twice_the_threads_are_queued_and_refuses_once_stopping():
    gate, started, stopping = threading.Event(), threading.Event(), threading.Event()

    def work(step):
        started.set()
        gate.wait()

    pool = UploadThreads(1, work, stopping=stopping.is_set)
    assert pool.put("running")
    assert started.wait(5)
    assert pool.put(0) and pool.put(1)  # 1 running + 2 queued: the queue is full
    results = []
    putter = threading.Thread(target=lambda: results.append(pool.put(2)))
    putter.start()
    assert putter.is_alive()  # it cannot return while the queue is full and the run goes on
    stopping.set()
    putter.join(5)
    assert results == [False]
    gate.set()
    pool.close()
