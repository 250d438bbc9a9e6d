"""Value rules the settings model applies to single fields: each says what is wrong and the fix.

A setting that passes its type can still break a visit or a lead: a phone region of "UK"
makes every phone number invalid, a callback number nobody can dial ends up in the consent
script, an endpoint of ``https://`` has no host. These run when the settings load, so the
daemon, ``kiosk config check`` and the self-test all refuse them the same way.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

import phonenumbers
from pydantic import AfterValidator

# Regions people type that are not ISO 3166 codes.
_REGION_HINTS = {"UK": "GB", "EN": "GB", "USA": "US", "UAE": "AE"}
_EMAIL = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")


def phone_region(value: str) -> str:
    """An ISO 3166 region phonenumbers knows ("GB", not "UK")."""
    code = value.strip().upper()
    if code in phonenumbers.SUPPORTED_REGIONS:
        return code
    hint = _REGION_HINTS.get(code)
    raise ValueError(f"not a phone region{f'; use {hint!r}' if hint else ' (ISO 3166 code like US or GB)'}")


def phone_number(value: str) -> str:
    """A dialable number with its country code (+15555550100)."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        raise ValueError("not a phone number; write it with the country code, like +15555550100")
    return value


def email_address(value: str) -> str:
    """An e-mail address (empty means "none" where the field allows it)."""
    if value and not _EMAIL.match(value):
        raise ValueError("not an e-mail address")
    return value


def _link(value: str, secure: str, plain: str) -> str:
    """A URL the kiosk connects to: ``secure`` scheme (``plain`` only on this machine), a host,
    a valid port, nothing a client chokes on later, and no credentials in it."""
    if value != value.strip() or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise ValueError(f"is not a usable URL ({exc})") from None
    loopback = parts.scheme == plain and parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not (parts.scheme == secure or loopback) or not parts.hostname:
        raise ValueError(f"must be {'an' if secure == 'https' else 'a'} {secure}:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold a user name or password (credentials belong in the credentials file)")
    return value


def web_link(value: str) -> str:
    """An https:// link with a host (http:// only on this machine), as visitors are sent it."""
    return _link(value, "https", "http")


def one_click_link(value: str) -> str:
    """An https:// link, never plain http, not even on this machine ('' = none): mail providers
    POST a one-click unsubscribe there (RFC 8058 requires HTTPS)."""
    return value and _link(value, "https", "https")


def realtime_link(value: str) -> str:
    """A wss:// WebSocket endpoint with a host (ws:// only on this machine: the simulator)."""
    return _link(value, "wss", "ws")


def not_blank(value: str) -> str:
    """Something a person reads or hears: never empty."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


PhoneRegion = Annotated[str, AfterValidator(phone_region)]
PhoneNumber = Annotated[str, AfterValidator(phone_number)]
EmailAddress = Annotated[str, AfterValidator(email_address)]
WebLink = Annotated[str, AfterValidator(web_link)]
OneClickLink = Annotated[str, AfterValidator(one_click_link)]
RealtimeLink = Annotated[str, AfterValidator(realtime_link)]
NotBlank = Annotated[str, AfterValidator(not_blank)]
