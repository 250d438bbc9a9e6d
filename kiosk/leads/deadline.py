"""Overall deadlines for blocking network calls: a time-out per socket operation is not one.

``http.client`` and ``smtplib`` bound each socket operation, so a server sending one byte
every few seconds holds a request for ever. A :class:`Cutoff` shuts the request's socket
down when its deadline passes, or at once when its :class:`Aborter` is told to (the daemon
is stopping): the call blocked in that socket returns with an error in its own thread, and
the ``with`` block ends in a :class:`TimeoutError` naming the deadline. Nothing here reads
the wall clock; the timer is a monotonic one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

RETRY_S = 0.05  # fired before the socket existed: look again this often until the block ends


class Aborter:
    """Ends every :class:`Cutoff` in flight at once, from any thread (shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Cutoff] = set()
        self.aborted = False

    def abort(self) -> None:
        """Cut every operation in flight and refuse new ones until :meth:`reset`."""
        with self._lock:
            self.aborted = True
            live = list(self._live)
        for cut in live:
            cut.fire("stopping")

    def reset(self) -> None:
        """Allow operations again."""
        with self._lock:
            self.aborted = False

    def _add(self, cut: Cutoff) -> bool:
        with self._lock:
            if self.aborted:
                return False
            self._live.add(cut)
            return True

    def _remove(self, cut: Cutoff) -> None:
        with self._lock:
            self._live.discard(cut)


class Cutoff:
    """``with Cutoff(seconds, lambda: conn.sock):`` the block's socket work ends by ``seconds``.

    ``sock_of`` returns the socket in use (None before it is connected); it is read when
    the deadline passes, so a socket replaced mid-block (STARTTLS) is the one cut.
    """

    def __init__(
        self, seconds: float, sock_of: Callable[[], socket.socket | None], aborter: Aborter | None = None
    ) -> None:
        self.seconds = seconds
        self._sock_of = sock_of
        self._aborter = aborter
        self._lock = threading.Lock()
        self._done = False
        self._timer: threading.Timer | None = None
        self.fired: str | None = None  # why the socket was cut: "deadline" or "stopping"

    def __enter__(self) -> Cutoff:
        if self._aborter is not None and not self._aborter._add(self):
            raise TimeoutError("not started: stopping")
        self._arm(self.seconds, "deadline")
        return self

    def _arm(self, delay: float, why: str) -> None:
        timer = threading.Timer(delay, self.fire, args=(why,))
        timer.daemon = True
        self._timer = timer
        timer.start()

    def fire(self, why: str) -> None:
        """Shut the socket down now (both directions): a blocked read or write returns."""
        with self._lock:
            if self._done:
                return
            self.fired = self.fired or why
            sock = self._sock_of()
            if sock is None:  # still connecting (bounded by its own time-out): try again soon
                self._arm(RETRY_S, why)
                return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
        if self._aborter is not None:
            self._aborter._remove(self)
        if self.fired is not None and (exc is None or isinstance(exc, Exception)):
            # Whatever the cut socket raised (or a reply read to a cut-short end): the
            # operation did not finish in time, and the caller must treat it as unanswered.
            what = f"no complete answer within {self.seconds:g} s" if self.fired == "deadline" else "stopping"
            raise TimeoutError(what) from None
