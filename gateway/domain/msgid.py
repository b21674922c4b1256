"""Our Message-IDs, signed: `<reference>.<nonce>.<mac>@<domain>`.

The MAC is HMAC-SHA256 over the rest of the Message-ID, cut to 80 bits. A reply's
In-Reply-To that carries one of these names its ticket without a database lookup, and
a forged one (a made-up nonce, another reference) is recognised as forged: it
attaches nothing. Keys rotate: Message-IDs signed by a previous key still verify.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

_MAC_HEX = 20  # 80 bits
_NONCE_HEX = 16  # 64 bits: Message-IDs must be unique, the outbox enforces it
_SIGNED = re.compile(
    r"^(?:(?P<reference>[A-Za-z][A-Za-z0-9]*-\d{4}-\d{6,})\.)?"
    rf"(?P<nonce>[0-9a-f]{{{_NONCE_HEX}}})\.(?P<mac>[0-9a-f]{{{_MAC_HEX}}})@(?P<domain>.+)$"
)


@dataclass(frozen=True)
class OwnMessageId:
    """A Message-ID we signed, and the ticket reference it carries (None: no ticket)."""

    reference: str | None


class MessageIdSigner:
    def __init__(self, keys: Sequence[bytes], domain: str) -> None:
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("Message-ID keys must hold at least 16 bytes")
        self._keys = tuple(keys)
        self._domain = domain.lower()

    def _mac(self, key: bytes, signed_part: str) -> str:
        return hmac.new(key, signed_part.encode(), hashlib.sha256).hexdigest()[:_MAC_HEX]

    def new(self, reference: str | None = None) -> str:
        """A fresh signed Message-ID (without angle brackets), carrying the reference."""
        nonce = secrets.token_hex(_NONCE_HEX // 2)
        head = f"{reference}.{nonce}" if reference else nonce
        mac = self._mac(self._keys[0], f"{head}@{self._domain}")
        return f"{head}.{mac}@{self._domain}"

    def verify(self, message_id: str) -> OwnMessageId | None:
        """What a Message-ID says, when we signed it; None for others and for forgeries."""
        found = _SIGNED.match(message_id)
        if found is None or found["domain"].lower() != self._domain:
            return None
        head = message_id[: found.start("mac") - 1]
        signed_part = f"{head}@{self._domain}"
        for key in self._keys:
            if hmac.compare_digest(self._mac(key, signed_part), found["mac"]):
                return OwnMessageId(reference=found["reference"])
        return None

    def is_own(self, message_id: str) -> bool:
        return self.verify(message_id) is not None

    def looks_own(self, message_id: str) -> bool:
        """In our domain: ours when it verifies, forged when it does not."""
        return message_id.rpartition("@")[2].lower() == self._domain
