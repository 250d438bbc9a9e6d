"""What the settings name must be there and usable: the checks ``kiosk config check``, the
self-test and the daemon's start share, so a mistake is found before a visitor finds it.

Single values are checked when the settings load (:mod:`kiosk.config.rules`); these checks
open the files the settings point at: the instructions (every ``{placeholder}`` known), the
lending file, a knowledge base with something in it, the e-mail templates, the recorded
messages, the CA bundles, the booking links, the visitors' e-mail opt-out. Each problem is
one line naming the setting and the fix. Sample values shipped with the project (the
example lender, its links) are warnings: fine for a demo, wrong in a branch office.
"""

from __future__ import annotations

import re
import ssl
import string
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.config.rules import web_link
from kiosk.config.sections import BranchSettings, Settings
from kiosk.errors import ConfigError

SAMPLE_LENDER = BranchSettings().lender_name
SAMPLE_NMLS = BranchSettings().nmls_id
SAMPLE_HOSTS = ("example.com", "example.org", "example.net")


@dataclass
class Findings:
    """Problems (the kiosk must not run so) and warnings (it runs, but not as a lender wants)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_errors(self, *, strict: bool = False) -> None:
        """ConfigError with every error (and, when ``strict``, every warning)."""
        problems = self.errors + (self.warnings if strict else [])
        if problems:
            raise ConfigError(problems)


def check_settings(settings: Settings) -> Findings:
    """Open and check everything the settings refer to."""
    found = Findings()
    found.errors += _instructions(settings)
    found.errors += _lending(settings, found)
    found.errors += _knowledge(settings.tools.knowledge_dir)
    found.errors += _templates(settings)
    for name in ("offline_message", "unavailable_message"):
        found.errors += _message(f"session.{name}", getattr(settings.session, name))
    found.errors += _ca_bundle("sync.ca_bundle", settings.sync.ca_bundle)
    found.errors += _ca_bundle("notify.smtp_ca_bundle", settings.notify.smtp_ca_bundle)
    found.errors += _placeholder_lender(settings.branch.lender_name)
    found.errors += _opt_out(settings, found)
    found.warnings += _samples(settings)
    return found


# Names that are a template's blank, not a lender: the consent would name nobody.
_PLACEHOLDER = re.compile(
    r"^\s*$|[<>{}\[\]]|\b(your|my|our)\s+(company|lender|business|name)\b|\blender\s+name\b|\b(todo|tbd|xxx+|"
    r"changeme|placeholder|acme|lorem|foo|bar|test)\b|^(lender|company|name)$",
    re.IGNORECASE,
)


def _placeholder_lender(name: str) -> list[str]:
    """The consent disclosure names the lender: a placeholder there makes every consent worthless."""
    if _PLACEHOLDER.search(name):
        return [f"branch.lender_name {name!r} is a placeholder: the consent disclosure must name the lender "
                "(its legal name, as on its NMLS record)"]  # fmt: skip
    return []


def _opt_out(settings: Settings, found: Findings) -> list[str]:
    """CAN-SPAM: every visitor e-mail needs an opt-out that reaches someone; without the
    address no visitor e-mail is written, which is an error once e-mail is on."""
    n = settings.notify
    if n.unsubscribe_address:
        if _is_sample_host(n.unsubscribe_address.rpartition("@")[2]):
            found.warnings.append(f"notify.unsubscribe_address is the shipped example ({n.unsubscribe_address}): "
                                  "visitors' opt-outs must reach a mailbox the lender's staff read")  # fmt: skip
        return []
    why = ("notify.unsubscribe_address is not set: visitor e-mails need an opt-out address someone reads "
           "(CAN-SPAM), so no follow-up e-mail is written; set it to the lender's unsubscribe mailbox")  # fmt: skip
    if n.smtp_host:
        return [why]
    found.warnings.append(why)
    return []


def _instructions(settings: Settings) -> list[str]:
    path = settings.realtime.instructions_file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return [f"realtime.instructions_file: {path} cannot be read ({exc.strerror or exc}): the assistant "
                "would run without its consent script; fix the path"]  # fmt: skip
    known = set(BranchSettings.model_fields)
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        return [f"realtime.instructions_file: {path}: a broken {{placeholder}} ({exc}); write {{{{ and }}}} "
                "for literal braces"]  # fmt: skip
    unknown = sorted(used - known)
    if unknown:
        names = ", ".join("{" + n + "}" for n in unknown)
        return [f"realtime.instructions_file: {path} uses unknown placeholder(s) {names}; "
                f"known: {', '.join('{' + k + '}' for k in sorted(known))}"]  # fmt: skip
    return []


def _lending(settings: Settings, found: Findings) -> list[str]:
    from kiosk.tools.lending import load_lending

    try:
        cfg = load_lending(settings.tools.lending_file)
    except ConfigError as exc:
        return [f"tools.lending_file: {p}" for p in exc.problems]
    errors = []
    links = dict(cfg.booking.products)
    for branch, by_product in cfg.booking.branches.items():
        links |= {f"{branch}.{product}": url for product, url in by_product.items()}
    for where, url in links.items():
        try:
            web_link(url)
        except ValueError as exc:
            errors.append(f"tools.lending_file: booking link {where}: {exc} (got {url!r})")
        if _is_sample(url):
            found.warnings.append(f"tools.lending_file: booking link {where} is the shipped example ({url})")
    return errors


def _knowledge(source: Path) -> list[str]:
    from kiosk.tools.knowledge import KnowledgeBase

    if not source.is_dir():
        return [f"tools.knowledge_dir: {source} is not a directory"]
    kb = KnowledgeBase.open_or_build(source)  # in memory: a check writes nothing
    try:
        if len(kb) == 0:
            return [f"tools.knowledge_dir: {source} has no sections to answer from (no *.md with headings)"]
    finally:
        kb.close()
    return []


def _templates(settings: Settings) -> list[str]:
    from kiosk.leads.mail import check_templates

    return [f"notify.templates_dir: {p}" for p in check_templates(settings.notify.templates_dir)]


def _message(name: str, path: Path | None) -> list[str]:
    from kiosk.audio.pcm import read_wav

    if path is None:
        return []
    try:
        read_wav(path)
    except (OSError, ValueError, EOFError) as exc:
        return [f"{name}: {path} is not a playable message: {exc}"]
    return []


def _ca_bundle(name: str, path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        return [f"{name}: {path} is not a PEM CA bundle ({exc})"]
    return []


def _is_sample(url: str) -> bool:
    from urllib.parse import urlsplit

    return _is_sample_host(urlsplit(url).hostname or "")


def _is_sample_host(host: str) -> bool:
    host = host.lower()
    return any(host == h or host.endswith("." + h) for h in SAMPLE_HOSTS)


def _samples(settings: Settings) -> list[str]:
    b, warn = settings.branch, []
    if b.lender_name == SAMPLE_LENDER:
        warn.append(f"branch.lender_name is the shipped example ({b.lender_name!r}): the consent names this lender")
    if b.nmls_id == SAMPLE_NMLS:
        warn.append(f"branch.nmls_id is the shipped example ({b.nmls_id!r})")
    if _is_sample(b.booking_url):
        warn.append(f"branch.booking_url is the shipped example ({b.booking_url})")
    if b.callback_phone.replace(" ", "").startswith("+1555555"):
        warn.append(f"branch.callback_phone is a fictional 555 number ({b.callback_phone})")
    if _is_sample(settings.notify.unsubscribe_url):
        warn.append(f"notify.unsubscribe_url is the shipped example ({settings.notify.unsubscribe_url})")
    if "Example" in settings.notify.postal_address:
        warn.append("notify.postal_address is the shipped example: visitor e-mails must carry the lender's address")
    return warn
