"""FACADE (Pai, Carranza, Schaeffer, Tandon & Koyejo 2023, arXiv 2307.10563): unsupervised mechanistic anomaly
detection of adversarial inputs from pseudo-classes, circuits and the manifold geometry of pseudo-classes. Modules
mirror the proposal: ``pseudoclasses``, ``circuits``, ``geometry``, ``score`` (the :class:`Facade` detector); then
``experiment`` (notebook 04's runs), ``config``, ``plots`` and ``explore`` (04's explorer)."""

from labkit.facade.score import TERMS, Facade

__all__ = ["Facade", "TERMS"]
