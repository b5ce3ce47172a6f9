"""The dev SMTP sink of ``worker.py --dev``: every email it takes lands as ``<data dir>/mail/*.eml``.

It runs an aiosmtpd server in a thread of the worker on 127.0.0.1 (a free port), so a newcomer
opens what a journey sent without an SMTP account. A file is named after the ``Message-ID``: a
re-delivery of the same message (a retried send) overwrites its file instead of adding one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import socket
import tempfile
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from journeys.settings import Settings

DEV_FROM = "journeys@localhost"


class LoopbackController(Controller):
    """An aiosmtpd Controller on 127.0.0.1 and a port the kernel picks (no race for a free port)."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        # IPPROTO_TCP given, else asyncio does not set TCP_NODELAY on its connections, and
        # aiosmtpd's EHLO lines (one write each) wait out delayed ACKs: 40 ms a connection.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.bind(("127.0.0.1", 0))
        kwargs.setdefault("server_hostname", "localhost")  # else a getfqdn() (DNS) per connection
        super().__init__(handler, hostname="127.0.0.1", port=self._socket.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._socket, ssl=self.ssl_context)

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"


def eml_name(content: bytes) -> str:
    """The file name of a message: its Message-ID made safe for a path, else a digest of it."""
    headers = BytesParser(policy=default_policy).parsebytes(content, headersonly=True)
    found = str(headers.get("Message-ID", "")).strip().strip("<>")
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", found).lstrip(".")[:200]
    return f"{safe or 'no-message-id-' + hashlib.sha256(content).hexdigest()[:32]}.eml"


class MailFolder:
    """An aiosmtpd handler writing each message to ``folder`` (atomically: a reader never sees half)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        await asyncio.to_thread(self._write, eml_name(content), content)
        return "250 OK"

    def _write(self, name: str, content: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".incoming-")
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.replace(tmp, self.folder / name)


class MailSink:
    """The running sink: where it listens, the folder it writes, and how to stop it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.controller = LoopbackController(MailFolder(folder))

    @property
    def address(self) -> str:
        return self.controller.address

    def start(self) -> MailSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` with email pointed at this sink (plain SMTP, no login)."""
        return settings.model_copy(update={
            "smtp_host": self.controller.hostname, "smtp_port": self.controller.port, "smtp_tls": "none",
            "smtp_username": None, "smtp_password": None, "email_from": settings.email_from or DEV_FROM})


async def start_dev_sink(settings: Settings) -> tuple[MailSink | None, Settings]:
    """For ``worker.py --dev``: a sink in ``<data dir>/mail/`` and the settings that use it, unless
    JOURNEYS_SMTP_HOST names a real server (then no sink, and the settings as they are)."""
    if settings.smtp_host:
        return None, settings
    # aiosmtpd logs a dozen lines an email at INFO, addresses included: the .eml file says it all.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = await asyncio.to_thread(MailSink(settings.data_dir / "mail").start)
    return sink, sink.settings_for(settings)
