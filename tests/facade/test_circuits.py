"""Edge attribution against finite differences, top edges, the Bernoulli circuits (labkit.facade.circuits)."""

import math

import numpy as np
import pytest
import torch

from labkit import repro
from labkit.classifiers import MLP
from labkit.facade.circuits import BernoulliCircuits, edge_attributions, edge_slices, top_edges


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
