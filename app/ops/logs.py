"""Log lines for people and for log collectors: every line has a timestamp and a level;
SYNCSTATUS_LOG_FORMAT=json gives one JSON object per line. uvicorn's own loggers go through
the same formatter (see uvicorn_log_config), so a process writes one format only."""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}  # uvicorn's coloured copy of the message
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> <message> key=value ...`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = _fields(record)
        if not extra:
            return text
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in extra.items())
        head, newline, rest = text.partition("\n")  # keep a traceback below the fields
        return f"{head} {pairs}{newline}{rest}"


def _text_value(value: Any) -> str:
    text = "-" if value is None else str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class NoWebSocketAccessLines(logging.Filter):
    """Drops uvicorn's own line per WebSocket handshake ('... "WebSocket /graphql?..."
    [accepted]', or its status), logged at INFO on uvicorn.error: it carries the query string,
    where a careless client puts its token, and our request log has a line per connection
    already (app/ops/request_log.py, without query strings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith('%s - "WebSocket %s"'))


def _formatter_class(log_format: str) -> str:
    return "app.ops.logs.JsonFormatter" if log_format == "json" else "app.ops.logs.TextFormatter"


def uvicorn_log_config(level: str, log_format: str) -> dict[str, Any]:
    """A logging dictConfig for uvicorn's `log_config`, applied in every worker process too:
    our formatter on stderr for the root logger and uvicorn's, whose access log is replaced by
    our request log (app/ops/request_log.py)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": _formatter_class(log_format)}},
        "filters": {"no_websocket_access": {"()": NoWebSocketAccessLines}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {
                "handlers": [],
                "level": level,
                "propagate": True,
                "filters": ["no_websocket_access"],
            },
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            # httpx logs each webhook attempt at INFO with the receiver's full URL, whose query
            # string may hold its secret; the deliverer logs attempts itself, without it.
            "httpx": {"handlers": [], "level": "WARNING", "propagate": True},
            "httpcore": {"handlers": [], "level": "WARNING", "propagate": True},
            # Alembic's plugin registration when it is first imported (seven lines, nothing
            # about the database): commands import it only to migrate, after this is applied.
            "alembic.runtime.plugins": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }


def configure(level: str, log_format: str) -> None:
    """The same setup for commands that do not run uvicorn."""
    logging.config.dictConfig(uvicorn_log_config(level, log_format))
