"""Output that can no longer be written never stops a run (tasks/terminal.py)."""
import io
import os

from tasks.terminal import SafeStream


class Closing(io.StringIO):
    """A stream whose reader went away after ``ok`` writes (`fab plan | head`)."""

    def __init__(self, ok: int, error: Exception):
        super().__init__()
        self.ok, self.error, self.attempts = ok, error, 0

    def write(self, text):
        self.attempts += 1
        if self.attempts > self.ok:
            raise self.error
        return super().write(text)

    def flush(self):
        if self.attempts > self.ok:
            raise self.error


def test_a_broken_pipe_stops_the_output_not_the_run():
    inner = Closing(1, BrokenPipeError(32, "Broken pipe"))
    out = SafeStream(inner)
    assert out.write("[1/6] checklist ...\n") == 20
    assert out.write("[2/6] prepare ...\n") == 18          # failed quietly: counted as written
    out.flush()
    assert out.write("[3/6] pull ...\n") == 15 and out.lost
    assert inner.getvalue() == "[1/6] checklist ...\n" and inner.attempts == 2     # never tried again


def test_a_failed_flush_or_a_closed_file_is_lost_output_too():
    inner = Closing(5, OSError(5, "Input/output error"))      # a closed terminal: EIO
    out = SafeStream(inner)
    inner.attempts = 6
    out.flush()
    assert out.lost
    closed = io.StringIO()
    closed.close()
    other = SafeStream(closed)
    assert other.write("x") == 1 and other.lost                # ValueError: I/O operation on closed file


def test_a_lost_stream_with_a_file_descriptor_then_writes_to_dev_null():
    read_end, write_end = os.pipe()
    os.close(read_end)                                          # the reader is gone
    raw = os.fdopen(write_end, "w", buffering=1)
    out = SafeStream(raw)
    assert out.write("line\n") == 5 and out.lost
    raw.write("later output\n")                                # the fd is /dev/null now: no error
    raw.flush()
    assert os.readlink(f"/proc/self/fd/{raw.fileno()}") == os.devnull
    assert out.encoding == raw.encoding                        # everything else is the stream's own
    raw.close()
