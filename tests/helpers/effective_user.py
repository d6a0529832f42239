"""Acting as another user inside the test process (``seteuid``), so that mutmut sees which functions a test
reaches: calls made in a forked child or a subprocess are not counted for it (tests/mutation/README.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

NOBODY = 65534


@contextmanager
def effective_user(uid: int = NOBODY) -> Iterator[None]:
    """Run the block with effective user and group ``uid`` and no supplementary groups; root's ids come back after.

    Needs root (the saved set-user-ID stays 0, which is what lets the block give the ids back).
    """
    groups = os.getgroups()
    os.setgroups([])
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
