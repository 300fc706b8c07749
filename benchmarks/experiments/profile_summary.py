"""Where a run's time goes: a py-spy profile summarised per grail function (inclusive samples, heaviest first).

    py-spy record --rate 10 --format raw -o run.prof -- grail run --out RUN --quiet
    python benchmarks/experiments/profile_summary.py run.prof [TOP]
"""

from __future__ import annotations

import re
import sys
from collections import Counter

FRAME = re.compile(r"(\S+) \((?:.*/)?(grail/[^:]+)")


def inclusive_samples(path: str) -> tuple[Counter, int]:
    """Samples per grail function (a function counted once per stack, however deep it recurses), and the total."""
    samples: Counter = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            total += int(count)
            matches = (FRAME.match(frame.strip()) for frame in stack.split(";"))
            functions = {f"{m.group(2)}:{m.group(1)}" for m in matches if m}
            for function in functions:
                samples[function] += int(count)
    return samples, total


if __name__ == "__main__":
    samples, total = inclusive_samples(sys.argv[1])
    print(f"{total} samples")
    for function, count in samples.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
        print(f"{100 * count / total:5.1f} %  {function}")
