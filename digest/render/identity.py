"""Who the list is: the small frozen value the pure stages (render, message) take, not settings.

The edition stage (or any edge) builds one :class:`ListIdentity` from the settings once,
with :meth:`ListIdentity.of`, and hands it down; the pure stages then never see the
configuration, the database or the environment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo


class IdentitySource(Protocol):
    """Anything that knows the list's identity (the settings do)."""

    @property
    def site_name(self) -> str: ...
    @property
    def site_url(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def sender_name(self) -> str: ...
    @property
    def sender_address(self) -> str: ...
    @property
    def postal_address(self) -> str: ...
    @property
    def list_id(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def brand_color(self) -> str: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def unsubscribe_mailto(self) -> str | None: ...
    @property
    def templates_dir(self) -> Path | None: ...


@dataclass(frozen=True, slots=True)
class ListIdentity:
    """The site, its addresses, the List-Id, the look of its email and where its templates are."""

    site_name: str
    site_url: str
    base_url: str  # where the subscriber pages are: unsubscribe, preferences, web versions
    sender_name: str
    sender_address: str
    postal_address: str
    list_id: str
    language: str = "en"
    timezone: str = "UTC"
    brand_color: str = "#1d4f91"
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    templates_dir: Path | None = None  # None: the built-in templates

    @classmethod
    def of(cls, source: IdentitySource | ListIdentity) -> ListIdentity:
        """``source``'s identity (``source`` itself when it already is one)."""
        if isinstance(source, ListIdentity):
            return source
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
