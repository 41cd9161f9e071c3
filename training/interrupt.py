"""Ctrl-C and SIGTERM become a request to stop after the current step, so the run can checkpoint first."""

import signal


class StopRequest:
    """While active, the first SIGINT/SIGTERM sets `signal_number`; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signal_number: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signal_number, frame):
        if self.signal_number == signal.SIGINT and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_number = signal_number

    @property
    def requested(self) -> bool:
        return self.signal_number is not None
