"""SSH I/O off the main thread: the main thread only waits, so Ctrl-C never lands inside paramiko.

Ctrl-C raises KeyboardInterrupt in the main thread at any bytecode boundary. Landing inside
paramiko it can leave a transport lock acquired (``_send_user_message`` takes
``clear_to_send_lock`` outside its try/finally), and every later command, the clean-up included,
then waits forever. Waiting here keeps the interrupt out of paramiko: the command in flight goes
on in its thread (the clean-up lets it finish or kills it) and the transport stays usable.
"""
from __future__ import annotations

import threading
from typing import Callable, Sequence


class Job:
    """``fn`` running in a worker thread (or inline when already off the main thread)."""

    def __init__(self, fn: Callable):
        self._box: dict = {}
        self.done = threading.Event()

        def work():
            try:
                self._box["result"] = fn()
            except BaseException as exc:          # handed to the waiting thread as is
                self._box["error"] = exc
            finally:
                self.done.set()

        if threading.current_thread() is threading.main_thread():
            threading.Thread(target=work, name="ssh-io", daemon=True).start()
        else:
            work()          # already off the main thread (heartbeat, downtime probe)

    def wait(self, on_tick: Callable[[], None] | None = None):
        """The result (or the error) of ``fn``; ``on_tick`` is called about every 0.25 s meanwhile."""
        while not self.done.wait(0.25):
            if on_tick:
                on_tick()
        if on_tick:
            on_tick(done=True)
        if "error" in self._box:
            raise self._box["error"]
        return self._box["result"]


class Background:
    """``fn`` started now in its own thread, its result asked later (:meth:`result`): a read a
    later step needs, begun beside the reads before it (Session.prefetch). The thread counts as a
    concurrent read (its own nested reads run in order, in it)."""

    unused: Callable | None = None      # given the result if the run never asks for it (Session.prefetch)

    def __init__(self, fn: Callable, setup: Callable[[], None] = lambda: None):
        self._box: dict = {}
        self.done = threading.Event()
        group = next(_groups)
        self.slot = (group, 0)

        def work():
            SLOT.slot = (group, 0)
            try:
                setup()
                self._box["result"] = fn()
            except BaseException as exc:          # handed to the asking thread as is
                self._box["error"] = exc
            finally:
                self.done.set()

        threading.Thread(target=work, name=f"prefetch-{group}", daemon=True).start()

    def result(self):
        """Wait for it (only waiting: Ctrl-C lands here, see above) and return it or raise its error."""
        while not self.done.wait(0.25):
            pass
        if "error" in self._box:
            raise self._box["error"]
        return self._box["result"]


class Ready:
    """A :class:`Background` that ran inline, at once (``fab plan``: in order, where it starts)."""

    unused: Callable | None = None

    def __init__(self, fn: Callable):
        self.done = threading.Event()
        self.done.set()
        try:
            self._box = {"result": fn()}
        except Exception as exc:          # handed to the asking step, as Background does
            self._box = {"error": exc}

    def result(self):
        if "error" in self._box:
            raise self._box["error"]
        return self._box["result"]


def off_main_thread(fn: Callable):
    return Job(fn).wait()


# Which concurrent read a thread runs: (group, index), for tests that put the commands of one
# group back in the order the plan shows them (tests/tasks/test_plan_matches_deploy.py).
SLOT = threading.local()
_groups = iter(range(1, 1 << 62))


def read_slot() -> tuple[int, int] | None:
    return getattr(SLOT, "slot", None)


_STOPPED: set[int] = set()      # the groups of the Background reads stopped (Background.stop)


def stop(jobs: Sequence[Background]) -> None:
    """The run ends, or goes on without these reads (Session.settle_prefetches): from now on they
    send nothing to the host (Session.run asks :func:`stopped_here`), not even a command one was
    waiting to send (the Compose probe, behind another read's lock) when its own was killed."""
    _STOPPED.update(job.slot[0] for job in jobs)


def stopped_here() -> bool:
    """This thread is a Background read that was stopped: it must send nothing more."""
    slot = read_slot()
    return slot is not None and slot[0] in _STOPPED


def run_all(fns: Sequence[Callable], setup: Callable[[], None] = lambda: None) -> list:
    """Call every ``fn`` at once, each in its own thread (``setup`` first, in that thread), and
    return their results in order; if any raised, raise the first one (in ``fns`` order) once all
    have ended, so no read is still running when the caller goes on. The waiting thread only waits
    (Ctrl-C lands there, see above); an interrupted wait leaves the reads to finish on their own."""
    group = next(_groups)
    jobs = []
    for i, fn in enumerate(fns):
        box: dict = {}
        done = threading.Event()

        def work(fn=fn, box=box, done=done, i=i):
            SLOT.slot = (group, i)
            try:
                setup()
                box["result"] = fn()
            except BaseException as exc:          # handed to the waiting thread as is
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name=f"read-{group}-{i}", daemon=True).start()
        jobs.append((box, done))
    for _, done in jobs:
        while not done.wait(0.25):
            pass
    for box, _ in jobs:
        if "error" in box:
            raise box["error"]
    return [box["result"] for box, _ in jobs]
