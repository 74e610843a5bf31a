"""The calibrated Facade estimator (labkit.facade.score): calibration, resolution sweeps, PGD images, seeding."""

import numpy as np
import pytest
import torch

from labkit.facade import Facade


def test_facade_is_calibrated_on_clean_data(setup):
    model, x, y, x_new = setup
    fac = Facade(lam=2.0, random_state=0).fit(model, x, y)
    assert np.mean(fac.calibration_scores_ > fac.threshold_) == pytest.approx(0.05, abs=0.02)
    terms = fac.term_scores(x_new)
    assert set(terms) == {"path", "circuit", "radius", "residual", "geometry", "total"}
    np.testing.assert_allclose(terms["total"], sum(terms[t] for t in fac.terms))
    np.testing.assert_array_equal(fac.predict(x_new), terms["total"] > fac.threshold_)
    single = Facade(terms=("circuit",)).fit(model, x, y, x_calibration=x_new)
    assert single.calibrated(single.raw_terms(x_new))["circuit"].mean() == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="terms"):
        Facade(terms=("nope",)).fit(model, x)


def test_with_resolution_equals_a_fresh_fit(setup):
    model, x, y, x_new = setup
    fitted = Facade(lam=2.0).fit(model, x, y)
    fresh = Facade(lam=3.0).fit(model, x, y)
    swept = fitted.with_resolution(3.0)
    assert fitted.lam == 2.0 and swept.lam == 3.0
    np.testing.assert_allclose(swept.score(x_new), fresh.score(x_new), rtol=1e-10)


def test_facade_scores_pgd_images_above_clean_ones(setup):
    """A sanity property, not a paper claim: on a competent classifier FACADE ranks PGD images above clean ones."""
    from sklearn.metrics import roc_auc_score

    from labkit.attacks import pgd

    model, x, y, x_new = setup
    fac = Facade(lam=2.0, random_state=0).fit(model, x, y)
    clean = x_new[:150]
    labels = model(torch.as_tensor(clean, dtype=torch.float32)).argmax(1)
    adversarial = pgd(model, clean, labels, eps=0.2, steps=10).numpy()
    scores = np.concatenate([fac.score(clean), fac.score(adversarial)])
    assert roc_auc_score(np.r_[np.zeros(150), np.ones(150)], scores) > 0.6  # chance is 0.5 (measured 0.69)


def test_facade_random_state_seeds_its_parts_through_distinct_substreams(setup):
    """Facade(random_state=s): the calibration split from derived_seed(s, 0), the pseudo-classes from
    derived_seed(s, 1) (and layer l of them from derived_seed(that, l)), never s itself or s + l."""
    from labkit.data.images import stratified_split
    from labkit.seeds import derived_seed

    model, x, y, _ = setup
    fac = Facade(lam=2.0, random_state=4).fit(model, x, y)
    fit_idx, _ = stratified_split(y, 0.25, derived_seed(4, 0))
    np.testing.assert_array_equal(fac.fit_data_, x[fit_idx])
    assert fac.pseudo_.random_state == derived_seed(4, 1)
