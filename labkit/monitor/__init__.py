"""Deceptive alignment monitoring (abstract 3): model organisms with planted hidden behaviour and the monitors that
try to catch them, at the data (``filters``), training (``organisms.distil``) and mechanism levels (the shared
``labkit.detectors`` and ``labkit.facade``). Modules: ``organisms``, ``filters``, ``evaluate`` (notebook 03's
experiment and its config), ``plots``."""
