"""A command run on a pseudo-terminal, as a person at a shell runs it: stdin,
stdout and stderr are the terminal, and the test reads what the screen
would show, waits for a line, types, and sends signals.

Bounded: every wait has a timeout, and the process is killed on exit.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

#: Escape sequences (colours, cursor moves) removed from what is read.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class Terminal:
    """`command` running on a pseudo-terminal of `columns` columns."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        columns: int = 200,
    ) -> None:
        master, slave = pty.openpty()
        self._master = master
        # The size rich reads to decide how wide a line may be.
        env = {**env, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self._raw = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.1)
                if not ready:
                    if self.process.poll() is not None:
                        ready, _, _ = select.select([self._master], [], [], 0.2)
                        if not ready:
                            return
                    continue
                chunk = os.read(self._master, 65536)
            except OSError:
                return  # the terminal closed with the process
            if not chunk:
                return
            with self._lock:
                self._raw.extend(chunk)

    @property
    def screen(self) -> str:
        """Everything shown so far, escape sequences removed."""
        with self._lock:
            text = self._raw.decode("utf-8", "replace")
        return _ESCAPES.sub("", text)

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Wait until `pattern` (a regular expression) has been shown;
        `AssertionError` with the screen if it is not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.screen)
            if match:
                return match
            if self.process.poll() is not None:
                self._reader.join(timeout=2)
                match = re.search(pattern, self.screen)
                if match:
                    return match
                break
            time.sleep(0.05)
        msg = f"{pattern!r} not shown; the screen:\n{self.screen}"
        raise AssertionError(msg)

    def type(self, text: str) -> None:
        os.write(self._master, text.encode())

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        """The exit status, once the process has ended within `timeout`."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        os.close(self._master)
