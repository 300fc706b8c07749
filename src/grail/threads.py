"""CPU thread settings, chosen from measurements (BENCHMARKS-threads.md, RESULTS.md *Time*).

OpenMP's worker threads spin while they wait for each other (libgomp: 300,000 turns before sleeping). Beside
another busy process a spinning thread burns the time slice its partner needs: a training step that takes 0.9-1.2 s
alone took 3-40 s beside one busy torch process here (and 23 s beside a test suite). Spinning too briefly
costs the other way: a stage-0 step is thousands of short operations, and with 1,000 turns
each one waited for its partner to wake: 1.56 s a step against 1.11 s with 10,000, which keeps the quiet
speed of the default. Beside a busy process it does no better than the default (a noisy measurement), so a user
who shares the machine sets 1,000 or one thread. OpenMP reads these once, when torch is first
imported, so the command line sets them before that (``grail.cli`` imports nothing heavy before
``configure_threads``); a user's own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` wins (``GOMP_SPINCOUNT=1000`` beside
other busy jobs).
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = "10000"


def configure_threads(threads: int | None = None) -> None:
    """The OpenMP spin count (only before torch is imported, and only if the user set no wait policy) and, if
    given, the number of intra-op threads."""
    if "torch" not in sys.modules and not ({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ)):
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
