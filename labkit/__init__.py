"""labkit: the thin library behind the notebooks of this companion.

Sub-packages, one per abstract: ``collapse`` (model collapse). Shared plumbing: ``paths`` (every path
from the repository root), ``config`` (validated notebook parameters), ``repro`` (determinism),
``provenance`` (figures, claims and their sidecars) and ``pipeline`` (the headless notebook runner).

Importing ``labkit`` imports nothing else, so a notebook's inputs are exactly the modules it names.
"""

__version__ = "0.1.0"
