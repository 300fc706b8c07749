"""The models a run holds and scores, by name (folders, evaluation files, table rows, attack reports)."""

from __future__ import annotations

from enum import StrEnum


class ModelName(StrEnum):
    """A ``StrEnum``: each member is its string, so it keys JSON documents and names files as the string does."""

    BASE = "base"
    """The pretrained model before any fine-tuning: it never saw data of the benchmark's kind."""
    VANILLA = "vanilla"
    """Stage 0's model, fine-tuned on every set: the model to unlearn."""
    ORACLE = "oracle"
    """Stage 0 without the forget sets: what exact unlearning (retraining) gives; ``grail attack``'s judge."""
    GRAIL = "grail"
    """Stage 3's model (the ``grail`` method)."""

    def __repr__(self) -> str:  # in a message's list of names, as the string it is
        return repr(self.value)
