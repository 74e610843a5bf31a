"""labkit.facade: the Markov chain and pseudo-class purity, geometry on Gaussians of known covariance, edge
attribution against finite differences, the Bernoulli circuit distribution, the calibrated Facade estimator, and
notebook 04's cross-seed summaries. (DP-means itself: tests/test_dpmeans.py.)"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from labkit import repro
from labkit.classifiers import MLP
from labkit.config import ConfigError
from labkit.facade import Facade
from labkit.facade.circuits import BernoulliCircuits, edge_attributions, edge_slices, top_edges
from labkit.facade.config import FacadeConfig
from labkit.facade.experiment import AttackStats, FacadeResult, SeedRun
from labkit.facade.geometry import (
    ClusterSubspaces,
    edge_contributions,
    log_radius_dimension,
    manifold_measures,
    pseudo_class_geometry,
)
from labkit.facade.pseudoclasses import PseudoClasses, purity


@pytest.fixture(scope="module")
def setup(digits_classifier):
    return digits_classifier


# --- pseudo-classes -------------------------------------------------------------------------------------------------


def test_purity_is_the_mean_majority_share_per_pseudo_class():
    labels = np.array([3, 3, 3, 7, 7, 9, 9, 9])
    column = np.array([0, 0, 1, 1, 1, 2, 2, 2])  # shares 1, 2/3, 1: each pseudo-class counts once
    assert purity(labels, column) == pytest.approx((1 + 2 / 3 + 1) / 3)
    np.testing.assert_allclose(
        purity(labels, np.column_stack([column, np.zeros(8, int), labels])), [(1 + 2 / 3 + 1) / 3, 3 / 8, 1.0]
    )
    with pytest.raises(ValueError, match="labels"):
        purity(labels, column[:5])


def test_markov_chain_is_normalised_and_scores_unseen_paths_lower():
    g = repro.rng(2)
    layers = [g.standard_normal((200, 4)) + 5 * (np.arange(200) % 2)[:, None] for _ in range(2)]
    outputs = np.arange(200) % 2
    pc = PseudoClasses(lam=3.0).fit(layers, outputs, n_outputs=2)
    assert np.isclose(np.exp(pc.log_initial_).sum(), 1)
    for logt in pc.log_transitions_:
        np.testing.assert_allclose(np.exp(logt).sum(axis=1), 1)
    assign, dist = pc.assign(layers)
    np.testing.assert_array_equal(assign, pc.train_paths_[:, :-1])
    typical = pc.path_nll(assign, outputs)
    swapped = pc.path_nll(assign, 1 - outputs)  # each path ending in the other class
    assert np.all(swapped > typical)


# --- geometry -------------------------------------------------------------------------------------------------------


def test_manifold_measures_on_a_gaussian_with_known_covariance():
    eig = np.array([4.0, 2.0, 1.0, 1.0, 0.5])
    mu = np.array([3.0, 0, 0, 4.0, 0])  # ‖μ‖ = 5
    q, _ = np.linalg.qr(repro.rng(3).standard_normal((5, 5)))
    x = repro.rng(4).multivariate_normal(mu, q @ np.diag(eig) @ q.T, size=200_000)
    m = manifold_measures(x)
    radius, dim = np.sqrt(eig.sum()) / 5, eig.sum() ** 2 / (eig**2).sum()
    assert m.radius == pytest.approx(radius, rel=0.01)
    assert m.dimension == pytest.approx(dim, rel=0.01)
    assert m.capacity == pytest.approx((1 + radius**-2) / dim, rel=0.02)
    iso = manifold_measures(repro.rng(5).standard_normal((100_000, 8)) + 1.0, center=np.ones(8) * 0.5)
    assert iso.dimension == pytest.approx(8, rel=0.02)  # isotropic: D = d
    assert iso.radius == pytest.approx(np.sqrt(8) / np.sqrt(8 * 0.25), rel=0.01)


@pytest.mark.parametrize("n", [5, 50])  # Gram form (n ≤ d) and covariance form (n > d)
def test_log_radius_dimension_matches_the_eigenvalues(n):
    x = repro.rng(6).standard_normal((n, 10)) + 2
    lam = np.linalg.eigvalsh(np.cov(x.T, bias=True))
    log_r, log_d = log_radius_dimension(torch.as_tensor(x), torch.zeros(10, dtype=torch.float64))
    assert float(log_r) == pytest.approx(np.log(np.sqrt(lam.sum()) / np.linalg.norm(x.mean(axis=0))), abs=1e-10)
    assert float(log_d) == pytest.approx(np.log(lam.sum() ** 2 / (lam**2).sum()), abs=1e-10)


def test_cluster_subspaces_and_pseudo_class_table():
    g = repro.rng(7)
    flat = np.column_stack([g.standard_normal((300, 2)) * 3, 0.01 * g.standard_normal((300, 3))])  # a 2-D sheet
    sub = ClusterSubspaces().fit(flat, np.zeros(300, int), 1)
    assert sub.bases_[0].shape == (5, 2)
    off = np.array([[0, 0, 1.0, 0, 0]])
    on = np.array([[1.0, 1.0, 0, 0, 0]])
    assert sub.relative_residual(off, np.zeros(1, int))[0] > 100 * sub.relative_residual(on, np.zeros(1, int))[0]
    table = pseudo_class_geometry(flat, np.arange(300) % 3, bandwidth=1.0)
    assert list(table["size"]) == [100, 100, 100] and np.all(table["dimension"] > 1)


# --- circuits -------------------------------------------------------------------------------------------------------


def _tiny():
    torch.manual_seed(0)
    return MLP((4, 5, 3, 2), dropout=0.0).double().eval()


def test_edge_attributions_equal_finite_difference_gate_derivatives():
    model = _tiny()
    x = torch.as_tensor(repro.rng(8).uniform(size=(3, 4)))
    scores, pred = edge_attributions(model, x)
    slices = edge_slices(model)
    h = 1e-6
    for n in range(len(x)):
        for l, lin in enumerate(model.linears):
            for e in range(lin.weight.numel()):
                metric = []
                for sign in (1, -1):
                    gates = [torch.ones_like(m.weight) for m in model.linears]
                    gates[l].view(-1)[e] += sign * h
                    metric.append(model(x[n : n + 1], gates)[0, pred[n]].item())
                fd = (metric[0] - metric[1]) / (2 * h)
                assert scores[n, slices[l].start + e].item() == pytest.approx(fd, abs=1e-7)


def test_top_edges_picks_the_largest_per_layer():
    model = _tiny()
    scores = torch.as_tensor(repro.rng(9).standard_normal((4, 20 + 15 + 6)))
    mask = top_edges(scores, edge_slices(model), 0.2)
    for sl in edge_slices(model):
        k = math.ceil(0.2 * (sl.stop - sl.start))
        assert np.all(mask[:, sl].sum(dim=1).numpy() == k)
        kept = scores[:, sl].abs() * mask[:, sl]
        dropped = scores[:, sl].abs() * ~mask[:, sl]
        assert torch.all(kept.max(dim=1).values >= dropped.max(dim=1).values)


def test_bernoulli_circuits_nll_and_beta_smoothing():
    masks = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    groups = np.array([0, 0, 1])
    bc = BernoulliCircuits(n_groups=3).fit(masks, groups)
    np.testing.assert_allclose(bc.inclusion_[0], [3 / 4, 2 / 4, 2 / 4])
    np.testing.assert_allclose(bc.inclusion_[2], [0.5, 0.5, 0.5])  # unseen group: the Beta(1,1) mean
    b = masks[0].numpy()
    direct = -np.sum(b * np.log(bc.inclusion_[0]) + (1 - b) * np.log(1 - bc.inclusion_[0]))
    assert bc.nll(masks[:1], np.array([0]))[0] == pytest.approx(direct, rel=1e-12)
    assert bc.nll(masks[:1], np.array([2]))[0] == pytest.approx(3 * np.log(2), rel=1e-12)


def test_edge_contributions_are_distributions(setup):
    model, x, y, _ = setup
    p = edge_contributions(model, x, y, 11)  # group 10 is empty: uniform
    assert p.shape == (11, sum(lin.weight.numel() for lin in model.linears))
    np.testing.assert_allclose(p.sum(axis=1), 1)
    assert np.all(p >= 0) and np.allclose(p[10], p[10, 0])


# --- the estimator --------------------------------------------------------------------------------------------------


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


def test_config_rejects_bad_values():
    assert FacadeConfig.from_params(scale="smoke").n_seeds >= 2
    with pytest.raises(ConfigError, match="lam"):
        FacadeConfig.from_params(lam=2.5)
    with pytest.raises(ConfigError, match="unknown"):
        FacadeConfig.from_params(lambda_=2.0)


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


# --- notebook 04's cross-seed summaries ------------------------------------------------------------------------------


def _seed_run(seed, clean_accuracy, success, loss, linf, pixels, auroc, clean_fpr):
    attacks = {a: AttackStats(success[a], loss[a], linf[a], *pixels[a]) for a in success}
    return SeedRun(
        seed=seed,
        clean_accuracy=clean_accuracy,
        attacks=attacks,
        adversarial_accuracy={a: clean_accuracy * (1 - s.success_rate) for a, s in attacks.items()},
        scores={},
        metrics={d: {a: {"auroc": v, "tpr_at_fpr": v / 2} for a, v in per.items()} for d, per in auroc.items()},
        raw={},
        clean_fpr=clean_fpr,
        trajectories={},
        pseudo_geometry=[],
        model=None,
        facade=SimpleNamespace(pseudo_=SimpleNamespace(train_paths_=np.array([[0, 1, 5], [0, 1, 5], [1, 1, 5]]))),
        adversarial={},
        y_train=np.array([2, 2, 4]),
        x_test=np.zeros((0, 64)),
    )


def test_facade_result_summaries_over_seeds():
    cfg = FacadeConfig.from_params(scale="smoke", eps_values=(0.1,))
    names = ["FGSM ε=0.1", "PGD ε=0.1"]
    runs = [
        _seed_run(
            11,
            0.9,
            dict(zip(names, (0.5, 0.7))),
            dict(zip(names, (1.0, 1.5))),
            dict(zip(names, (0.1, 0.09))),
            dict(zip(names, ((0.0, 1.0), (0.02, 0.9)))),
            {"MSP": dict(zip(names, (0.6, 0.8)))},
            0.04,
        ),
        _seed_run(
            12,
            0.8,
            dict(zip(names, (0.25, 0.5))),
            dict(zip(names, (2.0, 2.0))),
            dict(zip(names, (0.099, 0.1))),
            dict(zip(names, ((0.01, 0.95), (0.0, 1.0)))),
            {"MSP": dict(zip(names, (0.7, 1.0)))},
            0.08,
        ),
    ]
    result = FacadeResult(cfg, runs)
    assert result.attacks == names
    assert result.mean_over_seeds(lambda r: r.clean_fpr) == pytest.approx(0.06)
    np.testing.assert_allclose(result.mean_over_seeds(lambda r: np.array([r.clean_accuracy, 1.0])), [0.85, 1.0])
    assert result.clean_accuracy() == pytest.approx(0.85)
    summary = result.attack_summary()
    fgsm = summary["FGSM ε=0.1"]
    assert fgsm.accuracy_after_attack == pytest.approx((0.9 * 0.5 + 0.8 * 0.75) / 2)
    assert fgsm.success_rate == pytest.approx(0.375) and fgsm.mean_loss == pytest.approx(1.5)
    assert (fgsm.max_linf, fgsm.min_pixel, fgsm.max_pixel) == (0.1, 0.0, 1.0)
    assert (summary["PGD ε=0.1"].min_pixel, summary["PGD ε=0.1"].max_pixel) == (0.0, 1.0)
    assert result.accuracy_drop()["PGD ε=0.1"] == pytest.approx((0.9 * 0.7 + 0.8 * 0.5) / 2)
    gap = result.pgd_minus_fgsm()["ε=0.1"]
    assert gap["success_rate"] == pytest.approx(0.225) and gap["mean_loss"] == pytest.approx(0.25)
    mean, se = result.metric_table("auroc")["MSP"]["PGD ε=0.1"]
    assert mean == pytest.approx(0.9) and se == pytest.approx(np.std([0.8, 1.0], ddof=1) / np.sqrt(2))
    assert result.metric_table("tpr_at_fpr")["MSP"]["FGSM ε=0.1"][0] == pytest.approx(0.325)
    np.testing.assert_allclose(runs[0].purity(), [(1 + 1) / 2, 2 / 3])  # paths (0, 0, 1) and (1, 1, 1)
