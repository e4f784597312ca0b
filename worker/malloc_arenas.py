"""Cap the C allocator's arenas, so the sending and paging threads do not each grow their own.

glibc's malloc gives threads up to eight arenas per core and keeps what each one freed, so a
process whose 16 paging threads and 16 sending threads have all allocated holds many arenas'
worth of freed memory: a 100,000-invoice sweep peaked 14 MB higher (155 MB against 141 MB)
than with two arenas, for the same CPU time (the interpreter lock serialises Python's own
allocations anyway). An operator's `MALLOC_ARENA_MAX` wins; other C libraries are left alone.
"""

from __future__ import annotations

import os

#: glibc's `mallopt` parameter number for the arena cap (malloc.h).
M_ARENA_MAX = -8
#: Arenas a dunning process keeps.
ARENAS = 2


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Apply the cap (arenas made from now on); whether it was applied. Call it before the
    process starts its threads."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    import ctypes  # here: only a process that does real work pays for the import

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl, macOS)
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
