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


def web_link(value: str) -> str:
    """An https:// link with a host (http:// only on this machine), as visitors are sent it."""
    parts = urlsplit(value)
    loopback = parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1")
    if not (parts.scheme == "https" or loopback) or not parts.hostname:
        raise ValueError("must be an https:// URL with a host")
    return value


def not_blank(value: str) -> str:
    """Something a person reads or hears: never empty."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


PhoneRegion = Annotated[str, AfterValidator(phone_region)]
PhoneNumber = Annotated[str, AfterValidator(phone_number)]
EmailAddress = Annotated[str, AfterValidator(email_address)]
WebLink = Annotated[str, AfterValidator(web_link)]
NotBlank = Annotated[str, AfterValidator(not_blank)]
