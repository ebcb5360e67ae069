"""Prints each message to a stream: for a quick look from the terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from digest.mail.transports.base import Envelope, TransportBase


class ConsoleTransport(TransportBase):
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.count = 0

    def send(self, envelope: Envelope, message: bytes) -> str:
        self.count += 1
        rule = "-" * 72
        self.stream.write(f"{rule}\nMAIL FROM:<{envelope.sender}> RCPT TO:<{envelope.recipient}>\n")
        self.stream.write(message.decode("ascii").replace("\r\n", "\n"))
        self.stream.write(f"\n{rule}\n")
        return f"250 printed ({self.count})"
