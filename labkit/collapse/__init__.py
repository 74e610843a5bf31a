"""Model collapse: what happens when models are fit, generation after generation, to their own outputs.

Modules: ``linear`` (linear regression, closed forms and simulation), ``gaussian`` (repeated Gaussian MLE),
``plots`` (the figures of notebook 01a) and ``config`` (the notebooks' parameters).
"""
