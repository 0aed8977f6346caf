"""The local outbox: the default provider for both channels when none is configured.

Each email is a `.eml` file a person can open in a mail client; each text is a file and
a line in `texts.log`. Files are written under a temporary name and renamed into place,
so a file that exists is a whole message: that is what lets `lookup` say for certain
whether an unconfirmed message went out after a worker was killed mid-batch.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from pathlib import Path

from campaigns.delivery.providers import Outcome, OutgoingEmail, OutgoingSms, SendResult


class LocalOutbox:
    name = "outbox"
    max_batch = 1000

    def __init__(
        self,
        folder: Path,
        delay: float = 0.0,
        sender: str = "care@lunara.example",
        brand: str = "Lunara",
    ):
        self.folder = Path(folder)
        self.delay = delay
        self.sender = sender
        self.brand = brand

    def _path(self, channel: str, message_id: int, test_ref: str | None = None) -> Path:
        ext = "eml" if channel == "email" else "txt"
        if test_ref:  # test sends and notices have no message row: named by reference
            return self.folder / "adhoc" / f"{channel}-{test_ref}.{ext}"
        return self.folder / channel / f"{message_id:08d}.{ext}"

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def send_emails(self, emails: list[OutgoingEmail]) -> list[SendResult]:
        results = []
        for item in emails:
            path = self._path("email", item.message_id, item.reference if item.adhoc else None)
            if not path.exists():  # idempotent, like a provider's idempotency key
                if self.delay:
                    time.sleep(self.delay)
                self._write(path, self._eml(item))
                self._log("email", item.message_id, "written")
            else:
                self._log("email", item.message_id, "duplicate call, not written")
            results.append(SendResult(item.message_id, Outcome.ACCEPTED, self._provider_id(item)))
        return results

    def send_sms(self, texts: list[OutgoingSms]) -> list[SendResult]:
        results = []
        for item in texts:
            path = self._path("sms", item.message_id, item.reference if item.adhoc else None)
            if not path.exists():
                if self.delay:
                    time.sleep(self.delay)
                self._write(path, f"To: {item.to}\n\n{item.body}\n".encode())
                stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
                with open(self.folder / "texts.log", "a", encoding="utf-8") as log:
                    log.write(f"{stamp} to {item.to} #{item.message_id}: {item.body}\n")
                self._log("sms", item.message_id, "written")
            else:
                self._log("sms", item.message_id, "duplicate call, not written")
            results.append(SendResult(item.message_id, Outcome.ACCEPTED, self._provider_id(item)))
        return results

    @staticmethod
    def _provider_id(item) -> str:
        return f"outbox-{item.reference}" if item.adhoc else f"outbox-{item.message_id}"

    def _log(self, channel: str, message_id: int, what: str) -> None:
        # One line per provider call: a short O_APPEND write is atomic across processes,
        # so ops (and the crash tests) can count calls per message.
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with open(self.folder / "deliveries.log", "a", encoding="utf-8") as log:
            log.write(f"{stamp} {channel} #{message_id} {what}\n")

    def lookup(self, message_id: int) -> bool:
        return self._path("email", message_id).exists() or self._path("sms", message_id).exists()

    def _eml(self, item: OutgoingEmail) -> bytes:
        msg = EmailMessage()
        msg["From"] = formataddr((self.brand, self.sender))
        msg["To"] = item.to
        msg["Subject"] = item.content.subject
        msg["Message-ID"] = make_msgid(domain=self.sender.rsplit("@", 1)[-1])
        msg["List-Unsubscribe"] = f"<{item.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["X-Drip-Reference"] = item.reference
        msg.set_content(item.content.text)
        msg.add_alternative(item.content.html, subtype="html")
        return bytes(msg)
