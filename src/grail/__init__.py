"""GRAIL: gradient-based adaptive unlearning of several domains at once (privacy, copyright, ...).

The three stages read like the paper:
- ``grail.stages.gradients``: stage 1, gradient information (Eq. 3);
- ``grail.stages.localize``: stage 2, adaptive parameter-wise localization (OP-UR, OP-RR, Eq. 4);
- ``grail.stages.unlearn``: stage 3, masked gradient ascent + descent with exact freezing.
``grail.pipeline.Pipeline`` chains them over a run folder (``grail.run_folder``), ``grail.experiments`` adds the
compared methods and tables; ``grail`` on the command line drives them.
"""

__version__ = "0.1.0"
