"""Associative memory as probabilistic modeling (abstract 2).

The one idea the package keeps visible: a memory's energy is a negative log likelihood, p(x) ∝ exp(−E(x)), and its
retrieval dynamics descend E, i.e. climb log p. Every memory model derives from :class:`labkit.memory.base.EnergyMemory`
and exposes ``energy``, ``update`` (one retrieval step), ``retrieve`` (iterate to a fixed point) and ``log_density``.

Modules: ``base`` (the shared interface); the reference points ``hopfield`` (classical binary and modern continuous
Hopfield networks); ``mean_shift`` (the Gaussian-KDE memory and its mean-shift retrieval) and ``kde`` (its capacity,
notebook 02a); ``clam`` (ClAM), ``elbo`` (the ELBO memory and its mixture model), ``crp`` (Bayesian-nonparametric memory
creation) and ``clusterers`` (the compared methods and their kernel widths) and ``clustering`` (their comparison with
standard clusterers, notebook 02b); ``icl_model`` (the in-context energy transformer and its training) and ``icl`` (its
evaluation, notebook 02c); ``attention`` (normalisation + attention as von Mises–Fisher posterior inference on the
hypersphere) and ``hypersphere`` (notebook 02d's experiment); the explorers ``explore_kde`` (02a) and ``explore_sphere``
(02d); the figures ``plots_kde``, ``plots_clustering``, ``plots_icl`` and ``plots_sphere``. Each notebook's config sits
in the module of its experiment.
"""
