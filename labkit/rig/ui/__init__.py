"""What a person at the rig looks at: the live panel's logic without widgets (``controller``, with the stimulus settings
in ``settings``, its pulse schedule in ``schedule``, the recorded sessions in ``session`` and the display buffers in
``display``), its Auto-map mode (``automap``: the closed-loop search run on the panel's rig), its drawings (``plots``),
the ipywidgets panel (``panel``), notebook 05b's scripted session and replay (``scripted``) and notebook 05a's sweep
explorer (``explore``). Importing the package imports none of its modules.
"""

__all__ = [
    "settings",
    "display",
    "schedule",
    "session",
    "controller",
    "automap",
    "plots",
    "panel",
    "scripted",
    "explore",
]
