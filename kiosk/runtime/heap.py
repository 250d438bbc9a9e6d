"""The C heap's policy for a kiosk that runs for weeks (glibc malloc).

glibc serves a block of 128 kB or more with its own mapping, returned to the system when
freed, but each time such a block is freed it raises that threshold to the block's size
(up to 32 MB): from then on blocks that large come from the heap, whose freed space is
seldom given back. One prerecorded message read or one large JSON document is enough to
leave megabytes resident for good. Fixing the threshold keeps the first behaviour. The
audio path's blocks (a chunk is a few kB) are far below it: their allocation is unchanged.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt()'s parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def fix_mmap_threshold() -> bool:
    """Keep large blocks in their own mappings for the process's life; False without glibc's mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return done
