"""Experiments run through the whole rig stack: notebook 05a's voltage × pulse-period mapping session (``mapping``: the
session through the real driver, NWB, the analysis) and its figures (``mapping_plots``); the closed-loop search of the
stimulation space (``search``: the loop, its designs and safety budget, through the driver alone) and the
strength–duration model it learns and chooses stimuli with (``strength_duration``); notebook 05c's evaluation of the
search against 05a's grid and a random design on simulated worms (``search_evaluation``, with how accurately each
session learned its worm in ``search_accuracy``) and its figures (``search_plots``). Importing the package imports none
of its modules.
"""

__all__ = [
    "mapping",
    "mapping_plots",
    "search",
    "strength_duration",
    "search_accuracy",
    "search_evaluation",
    "search_plots",
]
