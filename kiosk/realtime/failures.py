"""How the kiosk reads the service's refusals and failures: by code or close reason, never by message.

Pure tables and functions, used by the session core (``error`` events, failed responses)
and the connection (close codes). The rules, from what the service really does:

* quota, rate limits and server failures arrive as ``response.done`` with status
  ``failed`` and ``status_details.error.code``, not as ``error`` events: no quota is fatal,
  the others are worth one retry after a back-off;
* an ``error`` whose ``event_id`` names our ``session.update`` means the service refused
  the configuration (an unknown voice, a retired model): retrying cannot help;
* close code 3000 ends *any* invalid request, not only a bad key: its reason text
  (``invalid_request_error.invalid_api_key``) says which.
"""

from __future__ import annotations

import enum

# Codes that a barge-in race produces on a healthy session: not worth a warning.
BENIGN_CODES = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})
# Refusals that no retry can fix: a bad key, no money, a model the account cannot use.
FATAL_CODES = frozenset({"invalid_api_key", "insufficient_quota", "model_not_found"})
RECYCLE_CODES = frozenset({"session_expired"})
# response.done failures: fatal ones end the kiosk's service; the rest get one retry.
FATAL_RESPONSE_CODES = frozenset({"insufficient_quota"})

CLOSE_INVALID_REQUEST = 3000  # the service's "your request was invalid" close code


class ErrorKind(enum.Enum):
    """What an ``error`` event means for the session."""

    BENIGN = "benign"  # a race on a healthy session
    FATAL = "fatal"  # refused for good
    CONFIG = "config"  # our session.update was refused: fatal, with the parameter named
    RECYCLE = "recycle"  # the session ended (expired): open a fresh one
    REQUEST_REFUSED = "request_refused"  # our response.create was refused: it is not pending any more
    WARN = "warn"  # logged; the session goes on


def classify_error(code: str, caused_by: str) -> ErrorKind:
    """Classify an ``error`` event by its code and the type of client event it names."""
    if code in BENIGN_CODES:
        return ErrorKind.BENIGN
    if code in FATAL_CODES:
        return ErrorKind.FATAL
    if code in RECYCLE_CODES:
        return ErrorKind.RECYCLE
    if caused_by == "session.update":
        return ErrorKind.CONFIG
    if caused_by == "response.create":
        return ErrorKind.REQUEST_REFUSED
    return ErrorKind.WARN


class Outcome(enum.Enum):
    """How a response ended, as far as the kiosk must act on it."""

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"  # max_output_tokens or content_filter: logged
    RETRY = "retry"  # rate limit, server error: one retry after a back-off
    FATAL = "fatal"  # no quota


def response_outcome(status: str, error_code: str) -> Outcome:
    """Classify ``response.done`` by its status and ``status_details.error.code``."""
    if status == "completed":
        return Outcome.COMPLETED
    if status == "cancelled":
        return Outcome.CANCELLED
    if status == "incomplete":
        return Outcome.INCOMPLETE
    if status == "failed" and error_code in FATAL_RESPONSE_CODES:
        return Outcome.FATAL
    if status == "failed":
        return Outcome.RETRY
    # An unknown status: the reply did not complete; treat it like a cut-off one.
    return Outcome.INCOMPLETE


def close_is_fatal(code: int | None, reason: str) -> bool:
    """True when a closed connection must not be retried: the reason names a fatal refusal.

    Classified by the reason text (``invalid_request_error.invalid_api_key``): code 3000
    alone says only that some request was invalid.
    """
    if code != CLOSE_INVALID_REQUEST:
        return False
    return any(fatal in reason for fatal in FATAL_CODES)


def describe_close(code: int | None, reason: str) -> str:
    """A log-friendly description of a close."""
    if code is None:
        return "Realtime connection closed (no close frame)"
    if code == CLOSE_INVALID_REQUEST and "invalid_api_key" in reason:
        return f"Realtime closed the connection: invalid API key (code 3000, {reason})"
    return f"Realtime connection closed (code {code}{', ' + reason if reason else ''})"
