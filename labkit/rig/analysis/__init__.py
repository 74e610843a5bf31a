"""Analysis of rig recordings from any source, on plain arrays: stimulus-locked epochs and the band-pass
(``epochs``), stimulus-artefact removal (``cleaning``), spike detection and arrival times (``spikes``), conduction
velocity and its plausibility (``propagation``), a slower spike behind the first one (``cancellation``),
dose–response and strength–duration (``response``), notebook 05a's analysis of a stimulus sweep (``sweep``), segment
tracking from the camera (``tracking``) and the blind validation of the analysis on recordings with known answers
(``validation``). Importing the package imports none of its modules.
"""

__all__ = ["epochs", "cleaning", "spikes", "propagation", "cancellation", "response", "sweep", "tracking", "validation"]
