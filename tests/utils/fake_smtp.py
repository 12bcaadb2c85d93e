"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it is sent, or refuses it on demand."""

from __future__ import annotations

import email
import re
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from tests.utils.server import free_port

LINK = re.compile(r"https?://\S+/auth/v1/verify\?\S+")


class _Handler:
    def __init__(self, fake: FakeSMTP) -> None:
        self.fake = fake

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        if self.fake.refuse:
            return "451 Requested action aborted: local error in processing"
        self.fake.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class FakeSMTP:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse = False
        self.port = free_port()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"].lower() == address.lower()]

    def link_to(self, address: str) -> str:
        """The link in the newest message to this address."""
        [*_, last] = self.to(address)
        body = last.get_payload(decode=True)
        assert isinstance(body, bytes)
        found = LINK.search(body.decode())
        assert found, body
        return found.group(0)

    def close(self) -> None:
        self._controller.stop()
