"""Send e-mail through the configured SMTP server with aiosmtplib."""

from __future__ import annotations

import logging
from email.message import EmailMessage

import aiosmtplib

from fabpanel.settings import EmailSettings

log = logging.getLogger(__name__)


class MailError(RuntimeError):
    """The SMTP server refused or could not be reached."""


class Mailer:
    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self.sent = 0

    def build(self, to: str, subject: str, text: str, html: str | None = None) -> EmailMessage:
        msg = EmailMessage()
        msg['From'] = self.settings.sender
        msg['To'] = to
        msg['Subject'] = subject
        msg.set_content(text)
        if html:
            msg.add_alternative(html, subtype='html')
        return msg

    async def send(self, to: str, subject: str, text: str, html: str | None = None) -> None:
        s = self.settings
        msg = self.build(to, subject, text, html)
        try:
            # use_tls means STARTTLS, as in FabOMatic; port 465 speaks TLS from the first byte
            implicit = s.use_tls and s.port == 465
            await aiosmtplib.send(msg, hostname=s.server, port=s.port, use_tls=implicit,
                                  start_tls=s.use_tls and not implicit, username=s.username or None,
                                  password=s.password or None, timeout=30)
        except (aiosmtplib.SMTPException, OSError) as e:
            raise MailError(f'sending mail via {s.server}:{s.port} failed: {e}') from e
        self.sent += 1
        log.info('mail "%s" sent', subject)
