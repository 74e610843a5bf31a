"""Model collapse: what happens when models are fit, generation after generation, to their own outputs.

Modules: ``linear`` (linear regression, closed forms and simulation), ``gaussian`` (repeated Gaussian MLE),
``explore`` (notebook 01a's explorer), ``generations`` (the loop shared by every deep model family: replace /
accumulate / accumulate-subsample, run on a local process pool or a Dask cluster), the model families
``charlm`` (01b's experiment on Shakespeare, over ``charlm_model``, the character-level transformer, and
``charlm_train``, its training and sampling), ``vae`` (01c: a VAE on 8×8 digits) and ``diffusion`` (01d: denoising
diffusion of QM9 conformers, over ``diffusion_model``, the E(3)-equivariant denoiser); the figures ``plots`` (01a),
``plots_charlm``, ``plots_vae`` and ``plots_diffusion``; ``config`` (01a's parameters and the generation loop's
shared fields; each model family keeps its notebook's config next to its code, so a notebook's input hash covers
only the family it uses).
"""
