"""Logging set-up for the daemon: stderr or syslog, and per-connection prefixes.

Every line about a connection starts with ``conn=N`` (and ``queue=ID`` once
the MTA has told us the queue id), through a LoggerAdapter held on the
Connection. Untrusted text (HELO, MAIL FROM, DNS data) is logged through
``spf.trace.printable``, which escapes anything that could forge a line.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

from spf_milter.config import LogConfig, LogDestination

STDERR_FORMAT = "%(asctime)s %(levelname)s %(message)s"
SYSLOG_FORMAT = "spf-milter[%(process)d]: %(message)s"


def configure(config: LogConfig) -> None:
    """Send the package's log records where ``config`` says, at its level."""
    handler: logging.Handler
    if config.destination is LogDestination.SYSLOG:
        handler = logging.handlers.SysLogHandler(
            address=str(config.syslog_socket),
            facility=logging.handlers.SysLogHandler.facility_names[
                str(config.syslog_facility)
            ],
        )
        handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(str(config.level).upper())


class ConnectionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefix each message with the connection id and, once known, the queue id."""

    def __init__(self, logger: logging.Logger, connection_id: int) -> None:
        super().__init__(logger, {"conn": connection_id, "queue": ""})

    def set_queue_id(self, queue_id: str) -> None:
        """Add ``queue=ID`` to the following lines."""
        if self.extra is not None:
            self.extra = {**self.extra, "queue": queue_id}

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra: Mapping[str, object] = self.extra or {}
        queue = f" queue={extra['queue']}" if extra.get("queue") else ""
        return f"conn={extra.get('conn')}{queue} {msg}", kwargs
