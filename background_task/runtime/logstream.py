"""``--log-std``: send what tasks print to the log."""

from __future__ import annotations

import io
import logging
import threading
from typing import TextIO


class LogStream(io.TextIOBase):
    """A text stream that logs each line; a stand-in for sys.stdout/sys.stderr.

    ``flush()`` works (1.2.8's stand-in had none, so tasks calling it failed),
    and a log record that would be written back to this stream goes to the
    original stream instead of recursing.
    """

    def __init__(self, logger: logging.Logger, level: int, original: TextIO) -> None:
        self.logger = logger
        self.level = level
        self.original = original
        self._buffer = ""
        self._local = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if getattr(self._local, "busy", False):
            return self.original.write(text)
        self._local.busy = True
        try:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                if line:
                    self.logger.log(self.level, line)
        finally:
            self._local.busy = False
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self.write("\n")

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")
