"""Deceptive alignment monitoring (abstract 3): model organisms with planted hidden behaviour and the monitors that try
to catch them, at the data (``filters``), training (``organisms.distil``) and mechanism levels (the shared
``labkit.detectors`` and ``labkit.facade``). Modules: ``organisms``, ``filters``, ``protocol`` (one seed of notebook
03's protocol), ``evaluate`` (the runs over seeds, their summaries and the config), ``plots``."""
