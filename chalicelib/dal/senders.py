"""Message sender adapters. Only the log sender exists so far; SMS and WeChat template
senders implement the same `MessageSender` protocol."""

from __future__ import annotations

from typing import Any

from chalicelib.domain.messaging import Recipient
from chalicelib.domain.phone import mask_phone
from chalicelib.observability import logger


class LogSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []  # (member_id, template): lets tests look

    def send(self, recipient: Recipient, template: str, params: dict[str, Any]) -> None:
        self.sent.append((recipient.member_id, template))
        logger.info(
            "message sent",
            extra={
                "member_id": recipient.member_id,
                "to": mask_phone(recipient.phone),
                "template": template,
                # Names only: a value may be personal (the greeting's name is the
                # recipient's, filled in by a real channel when it sends).
                "params": sorted(params),
            },
        )
