"""Driving one thread per host (the fleet deploy, tasks/fleet.py, and the fleet reads,
tasks/fleetread.py): waiting for the threads so that a signal is still handled promptly, and
starting them without losing a signal that lands meanwhile."""
from __future__ import annotations

import contextlib
import signal
import threading
from concurrent import futures

from tasks import interrupts

WAKE_EVERY = 0.2


def wait_all(pending) -> None:
    """Wait for every future, waking up every WAKE_EVERY s: a signal the kernel handed to another
    thread is run by Python in the main thread only when it next runs bytecode."""
    while futures.wait(pending, timeout=WAKE_EVERY).not_done:
        pass


@contextlib.contextmanager
def deferred_signals():
    """INT/TERM/HUP held back (not lost) while the threads are started; delivered right after.
    Blocking them in the main thread is not enough: the kernel may hand one to another thread (a
    paramiko transport thread), and Python then runs the handler in the main thread at its next
    bytecode, inside submit(). So the handlers only note the signal meanwhile; it is raised again
    once every thread is started. The threads started meanwhile keep them blocked."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    handlers = {sig: signal.getsignal(sig) for sig in interrupts.HANDLED}
    for sig, handler in handlers.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, lambda signum, frame: noted.append(signum))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, interrupts.HANDLED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for sig, handler in handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if noted:
            signal.raise_signal(noted[0])
