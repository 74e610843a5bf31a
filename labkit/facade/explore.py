"""Notebook 04's explorer: attack strength, attack and FACADE statistic, live, on one seed's fitted model.

Controls: the L∞ budget ε, the attack (FGSM or PGD with the run's step count) and the score (FACADE's calibrated
total or one of its terms). The clean test images the model classifies correctly are attacked afresh at that ε
(:mod:`labkit.attacks`); left: the score's distribution on those clean images and on the successful adversarial
ones; right: the ROC curve (:func:`sklearn.metrics.roc_curve`) with its AUROC and the TPR at the run's FPR.
"""

import ipywidgets as w
import numpy as np
from sklearn.metrics import roc_curve

from labkit import repro
from labkit.attacks import fgsm, pgd
from labkit.classifiers import predict
from labkit.detectors.metrics import detection_metrics
from labkit.explore import Explorer
from labkit.facade.experiment import ATTACK, SeedRun
from labkit.seeds import derived_seed

__all__ = ["facade_explorer"]


def facade_explorer(run: SeedRun, pgd_steps: int, fpr: float, eps: float = 0.1) -> Explorer:
    """The explorer over ``run`` (one run of :func:`labkit.facade.experiment.run_seed`: its model, FACADE and
    correctly classified clean test images; PGD starts from the run's own attack seed), starting at ``eps``."""
    model, facade, x = run.model, run.facade, run.x_test
    pgd_seed = derived_seed(run.seed, ATTACK)
    y = predict(model, x)  # these images are all classified correctly
    clean = facade.calibrated(facade.raw_terms(x))
    style = {"description_width": "70px"}
    controls = {
        "eps": w.FloatSlider(eps, min=0.01, max=0.5, step=0.01, description="ε (L∞)", style=style),
        "attack": w.ToggleButtons(options=["FGSM", "PGD"], description="attack", style=style),
        "score": w.Dropdown(options=["total", *facade.terms], value="total", description="FACADE", style=style),
    }

    def draw(fig, eps, attack, score):
        with repro.threads(1):  # small matrices (labkit.detectors.config)
            adv = fgsm(model, x, y, eps) if attack == "FGSM" else pgd(model, x, y, eps, pgd_steps, None, pgd_seed)
            success = predict(model, adv) != y
            if not success.any():
                raise ValueError(f"no {attack} attack at ε = {eps:g} changed a prediction: nothing to detect")
            attacked = facade.calibrated(facade.raw_terms(adv.numpy()[success]))
        s_clean, s_adv = clean[score], attacked[score]
        m = detection_metrics(s_clean, s_adv, fpr)
        ax_h, ax_r = fig.subplots(1, 2)
        bins = np.histogram_bin_edges(np.r_[s_clean, s_adv], bins=40)
        ax_h.hist(s_clean, bins=bins, alpha=0.6, density=True, label=f"clean ({len(s_clean)})")
        ax_h.hist(s_adv, bins=bins, alpha=0.6, density=True, label=f"{attack} ε={eps:g}, successful ({len(s_adv)})")
        ax_h.set_xlabel(f"FACADE {score} (calibrated z)")
        ax_h.set_ylabel("density")
        ax_h.set_title(f"attack success {success.mean():.0%} of {len(y)} correctly classified images")
        ax_h.legend(fontsize=8)
        labels = np.r_[np.zeros(len(s_clean)), np.ones(len(s_adv))]
        false_pos, true_pos, _ = roc_curve(labels, np.r_[s_clean, s_adv])
        ax_r.plot(false_pos, true_pos, color="tab:red", label=f"AUROC {m['auroc']:.3f}")
        ax_r.plot([0, 1], [0, 1], color="0.6", ls=":", label="chance")
        ax_r.axvline(fpr, color="0.4", lw=0.8, label=f"TPR at {fpr:.0%} FPR: {m['tpr_at_fpr']:.2f}")
        ax_r.set_xlabel("false-positive rate (clean flagged)")
        ax_r.set_ylabel("true-positive rate (adversarial flagged)")
        ax_r.set_title("ROC")
        ax_r.legend(fontsize=8, loc="lower right")
        ax_r.grid(alpha=0.3)

    return Explorer(controls, draw, title="Explore: FACADE against FGSM / PGD at any ε", figsize=(11.0, 4.2))
