"""Model collapse: what happens when models are fit, generation after generation, to their own outputs.

Modules: ``linear`` (linear regression, closed forms and simulation), ``gaussian`` (repeated Gaussian MLE),
``generations`` (the loop shared by every deep model family: replace / accumulate / accumulate-subsample, run on a
local process pool or a Dask cluster), the model families ``charlm`` (character-level transformer on Shakespeare),
``vae`` (VAE on 8×8 digits) and ``diffusion`` (E(3)-equivariant denoising diffusion of QM9 conformers), ``plots``
(shared figures) and ``config`` (notebook 01a's parameters; each model family keeps its notebook's config next to
its code, so a notebook's input hash covers only the module it uses).
"""
