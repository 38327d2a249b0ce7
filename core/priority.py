"""Background work yields the CPU to what people wait on.

The server's event loop answers every page and API call; decodes, encodes and inference run in threads
beside it on the same (often 2) cores. Under load the loop then waits for a core as well as for the
GIL, and a status read waits with it (issue 13: `/health` under a flood of 48 MP uploads). So in the
server, threads doing heavy work run at a lower priority (a higher nice value): the loop and the
threads answering status reads get a core first, and the heavy work loses nothing when the host is
otherwise idle. The OpenCV child processes a worker starts inherit its priority.

Off by default: `streamlit run Home.py` turns it on at start-up. Elsewhere (the CLI, tests,
benchmarks timing the queue against a direct call) every thread keeps the process's priority.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

BACKGROUND_NICE = 10  # added to the process's nice value; 19 is the lowest priority there is
_enabled = False


def enable() -> None:
    """From now on, `lower_this_thread` lowers the priority of the threads that call it."""
    global _enabled
    _enabled = True


def lower_this_thread() -> None:
    """Run the calling thread as background work, when enabled (Linux only: there a nice value belongs
    to a thread; elsewhere it would slow the whole process, the event loop included)."""
    if not _enabled or sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox that forbids it: the thread keeps its priority
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICE))


__all__ = ["BACKGROUND_NICE", "enable", "lower_this_thread"]
