"""The embedded server as a child process: started, waited for with a timeout, stopped; one way for the demo,
the latency benchmark and the tests.

The server prints `listening on HOST:PORT` (READY) once it listens. A thread reads the child's output from the start to
its end (kept in `lines`), so the child never blocks on a full pipe however much it logs.
"""

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from core.cli import UserError

READY = "listening on"


def die_with_parent() -> None:
    """For Popen's preexec_fn: the child gets SIGTERM when the process that started it dies, even by SIGKILL (a
    killed export leaves no infra-validation server behind). Linux only; elsewhere nothing."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now (for the REST port; the gRPC port is chosen by the server itself)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedServer:
    """`python -m serving.server --port 0 *args`; `target` is its host:port once started. A context manager."""

    def __init__(self, *args: str, timeout: float = 180, cwd: Path | None = None, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, "-m", "serving.server", "--port", "0", *args], cwd=cwd,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=die_with_parent)
        self.lines: list[str] = []
        self.target: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read_output, daemon=True).start()
        ended = self._ready.wait(timeout)
        if self.target is None:
            self.proc.kill()
            status = self.proc.wait()
            why = f"exit status {status}" if ended else f"not listening after {timeout:.0f} s"
            raise UserError(f"the server did not start ({why}); its last output:\n" + "".join(self.lines[-20:]))

    def _read_output(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith(READY) and self.target is None:
                self.target = line.split()[-1]
                self._ready.set()
        self._ready.set()  # the child ended: whoever waits stops waiting

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (the server drains requests in flight), then SIGKILL after `timeout`; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()

    def __enter__(self) -> "EmbeddedServer":
        return self

    def __exit__(self, *_) -> None:
        self.stop()
