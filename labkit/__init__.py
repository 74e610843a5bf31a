"""labkit: the thin library behind the notebooks of this companion.

Sub-packages, one per abstract: ``collapse`` (model collapse, 01*), ``memory`` (associative memory as probabilistic
modeling, 02*), ``monitor`` (deceptive alignment monitoring, 03), ``facade`` (mechanistic anomaly detection, 04) and
``rig`` (the earthworm rig: protocol, simulator, driver, analysis, tracking, live panel, 05*). Shared by 03 and 04:
``classifiers`` (a small MLP that exposes its layers), ``attacks`` (FGSM, PGD), ``detectors`` (one detector interface
and the established detectors) and ``heatmap`` (a table of mean ± SE drawn as a heat map); by 02b and 04: ``dpmeans``
(DP-means clustering). Real data: ``data`` (offline packages, guarded online loaders). Notebook tools: ``explore``
(interactive explorers) and ``lab`` (JupyterLab saves notebooks without outputs). Plumbing: ``paths`` (every path from
the repository root), ``config`` (validated parameters), ``repro`` (determinism), ``seeds`` (integer seeds from random
substreams), ``stats`` (means over seeds, standard errors), ``execution`` (where the work runs: scheduler, workers,
threads, device), ``atomic`` (crash-safe writes), ``provenance`` (figures, claims and their sidecars), ``manifest`` (the
published index), ``inputs`` (a notebook's inputs and their hash), ``kernel`` (one notebook on a guarded kernel) and
``pipeline`` (the headless notebook runner).

Importing ``labkit`` imports nothing else, so a notebook's inputs are exactly the modules it names.
"""

__version__ = "0.1.0"
