"""The mail the server sends to prove an address belongs to someone: invitation and confirmation links.

SMTP is configured with FLUXOPUS_SMTP_URL: `smtp://user:password@host:587` (STARTTLS when the
server offers it), `smtps://…:465` (TLS from the start), or `smtp://host:25` without credentials.
Without it the server sends nothing: sign-ups are confirmed at once, and an invitation's link is
handed once to the admin who made it, to pass on.

Links point at /auth/v1/verify, as GoTrue's do, so @supabase/supabase-js follows them unchanged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal
from urllib.parse import unquote, urlencode, urlsplit

LinkType = Literal["invite", "signup"]


class MailError(Exception):
    """The message could not be handed to the SMTP server."""


@dataclass(frozen=True)
class Mail:
    smtp_url: str | None
    sender: str
    public_url: str  # where browsers reach this server
    app_url: str  # the frontend: a followed link ends there
    invitation_ttl: dt.timedelta
    timeout: float = 10.0

    @property
    def configured(self) -> bool:
        return self.smtp_url is not None

    def link(self, secret: str, kind: LinkType) -> str:
        query = urlencode({"token": secret, "type": kind, "redirect_to": self.app_url})
        return f"{self.public_url}/auth/v1/verify?{query}"

    async def send(self, to: str, subject: str, body: str) -> None:
        """Hands the message to the SMTP server (in a thread: smtplib blocks), or raises MailError."""
        if self.smtp_url is None:
            raise MailError("no SMTP server is configured (FLUXOPUS_SMTP_URL)")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(body)
        await asyncio.to_thread(_deliver, self.smtp_url, message, self.timeout)

    def describe(self) -> str:
        """For the server banner."""
        if self.smtp_url is None:
            return (
                "not configured: sign-ups are confirmed without email, and invitation links are given to"
                " the admin who invites (set FLUXOPUS_SMTP_URL to send them)"
            )
        parts = urlsplit(self.smtp_url)
        return f"sending from {self.sender} through {parts.hostname}:{parts.port or _port(parts.scheme)}"


def _port(scheme: str) -> int:
    return 465 if scheme == "smtps" else 587


def _deliver(url: str, message: EmailMessage, timeout: float) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or _port(parts.scheme)
    try:
        if parts.scheme == "smtps":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if parts.scheme == "smtp" and smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            if parts.username:
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{type(exc).__name__}: {exc}") from exc


def invitation_message(company: str, link: str, expires: dt.datetime) -> tuple[str, str]:
    subject = f"You are invited to join {company} on Fluxopus"
    body = (
        f"You have been invited to join {company}.\n\n"
        f"Accept the invitation by following this link (it works once, until {expires:%Y-%m-%d %H:%M} UTC):\n\n"
        f"{link}\n\n"
        "If you did not expect this invitation, ignore this message: nothing happens unless the link is followed.\n"
    )
    return subject, body


def confirmation_message(link: str) -> tuple[str, str]:
    subject = "Confirm your email address for Fluxopus"
    body = (
        "Confirm that this address is yours by following this link (it works once, for a day):\n\n"
        f"{link}\n\n"
        "If you did not sign up, ignore this message.\n"
    )
    return subject, body
