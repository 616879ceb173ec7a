"""One line per event on stderr, as text (`ts level event k=v ...`) or JSON (product.md section 7).

Callers check ``log.debug_enabled`` before building debug fields on hot paths.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any, TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def _timestamp(now: float) -> str:
    seconds = int(now)
    millis = int((now - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class Log:
    def __init__(self, stream: TextIO | None = None, fmt: str = "text", level: str = "info") -> None:
        self.stream = stream
        self.configure(fmt, level)

    def configure(self, fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
        if stream is not None:
            self.stream = stream
        self.json = fmt == "json"
        self.threshold = LEVELS[level]
        self.debug_enabled = self.threshold <= LEVELS["debug"]

    def emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        if LEVELS[level] < self.threshold:
            return
        ts = _timestamp(time.time())
        if self.json:
            record: dict[str, Any] = {"ts": ts, "level": level, "event": event}
            record.update(fields)
            line = json.dumps(record, default=str)
        else:
            parts = [ts, level, event]
            parts.extend(f"{k}={_text_value(v)}" for k, v in fields.items())
            line = " ".join(parts)
        stream = self.stream or sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the proxy down

    def debug(self, event: str, **fields: Any) -> None:
        if self.debug_enabled:
            self.emit("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self.emit("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self.emit("error", event, fields)

    def exception(self, event: str, exc: BaseException, **fields: Any) -> None:
        fields["error"] = f"{type(exc).__name__}: {exc}"
        fields["traceback"] = "".join(traceback.format_exception(exc)).rstrip()
        self.emit("error", event, fields)


log = Log()
