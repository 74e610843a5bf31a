"""Explorers driven headlessly: each control redraws what the model says, bad combinations are named in the status
line without losing the figure, and under the pipeline an explorer is one static picture."""

import numpy as np
import pytest

from labkit.collapse import linear
from labkit.collapse.explore import linear_explorer
from labkit.explore import Explorer
from labkit.facade.explore import facade_explorer
from labkit.memory import attention
from labkit.memory.explore_kde import kde_explorer
from labkit.memory.explore_sphere import sphere_explorer
from labkit.rig.experiments import mapping
from labkit.rig.ui.explore import sweep_explorer


def test_an_explorer_redraws_on_every_change_and_keeps_its_figure_on_an_error():
    import ipywidgets as w

    calls = []

    def draw(fig, a):
        if a < 0:
            raise ValueError("a must be >= 0")
        calls.append(a)
        fig.subplots().plot([0, a])

    e = Explorer({"a": w.IntSlider(1, min=-5, max=5)}, draw)
    png = e.image.value
    e.set(a=3)
    assert calls == [1, 3] and e.redraws == 2 and e.image.value != png
    png = e.image.value
    e.set(a=-1)
    assert e.image.value == png and "ValueError: a must be &gt;= 0" in e.status.value
    with pytest.raises(KeyError, match="allowed: a"):
        e.set(b=1)


def test_headless_explorers_display_one_static_picture(monkeypatch):
    e = linear_explorer(n_iter=5, n_seeds=20)
    monkeypatch.setenv("LABKIT_HEADLESS", "1")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    e._ipython_display_()
    assert type(shown[0]).__name__ == "Image" and shown[0].data == e.image.value
    monkeypatch.setenv("LABKIT_HEADLESS", "0")
    e._ipython_display_()
    assert shown[1] is e.widget


def test_linear_explorer_draws_the_closed_forms_and_names_an_impossible_setting():
    e = linear_explorer(n_iter=12, n_seeds=50)
    e.set(d=20, T=60, sigma2=0.5, show="theory")
    ax = e.figure.axes[0]
    c = linear.one_fit_error(20, 60, 0.5)
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert np.allclose(lines["replace: theory"], linear.theory(20, 60, 0.5, 12, "replace") / c)
    assert np.allclose(lines["accumulate: theory"], linear.theory(20, 60, 0.5, 12, "accumulate") / c)
    figure = e.figure
    e.set(T=21)  # T <= d + 1: refused, figure kept
    assert e.figure is figure and "need T &gt; d + 1" in e.status.value
    e.set(T=200, regimes="all three", show="simulation", log_y=True)
    labels = [c.get_label() for c in e.figure.axes[0].containers]
    assert len(labels) == 3 and e.figure.axes[0].get_yscale() == "log"


def test_sphere_explorer_follows_the_dynamics():
    e = sphere_explorer(beta=4.0, depth=0, n_tokens=12, max_depth=60)
    assert e.figure.axes[0].get_title().startswith("depth 0: 12 cluster(s)")
    e.set(depth=60)
    xs = attention.token_dynamics(attention.random_sphere_points((12,), 3, 0), 4.0, 60, 0.5)
    k = attention.cluster_count(xs[60], 0.1)
    assert e.figure.axes[0].get_title().startswith(f"depth 60: {k} cluster(s)") and k < 12


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    cfg = mapping.MappingConfig.from_params(scale="smoke")
    session = mapping.run_session(cfg, tmp_path_factory.mktemp("map") / "session")
    return mapping.analyse(session["nwb"], cfg)


def test_sweep_explorer_shows_the_chosen_trial_and_its_detected_arrivals(mapped):
    r = mapped
    e = sweep_explorer(r, trial=0)
    for trial in range(len(r["vpp"])):
        e.set(trial=trial)
        ax = e.figure.axes[0]
        assert ax.get_title().startswith(f"trial {trial}: {r['vpp'][trial]:g} Vpp")
        dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
        expected = np.isfinite(r["arrivals_ms"][trial]).sum() + np.isfinite(r["second_arrivals_ms"][trial]).sum()
        assert len(dots) == expected


def test_kde_explorer_draws_alpha1_and_the_retrieval_it_measures():
    from labkit import repro
    from labkit.memory import kde

    e = kde_explorer(lam=1.0, d=6, n_patterns=6, n_trials=2)
    assert e.figure.axes[0].get_title() == f"α₁(1) = {kde.alpha1(1.0):.3f}"
    for lam, n in ((0.2, 40), (3.0, 4), (3.0, 12)):
        e.set(lam=lam, n_patterns=n)
        patterns = kde.sphere_patterns(n, 2, repro.rng(0, 2))
        kept = np.linalg.norm(kde.retrieve(patterns, patterns, lam, 200) - patterns, axis=1) <= 0.1 * np.sqrt(2)
        assert e.figure.axes[1].get_title() == f"{n} patterns in 2-D: {kept.sum()} retrieved"
    assert e.figure.axes[0].get_title() == f"α₁(3) = {kde.alpha1(3.0):.3f}"


def test_facade_explorer_attacks_afresh_and_scores_with_the_fitted_facade():
    from labkit.facade import experiment
    from labkit.facade.config import FacadeConfig

    cfg = FacadeConfig.from_params(scale="smoke")
    run = experiment.run_seed(cfg, 0)
    e = facade_explorer(run, cfg.pgd_steps, cfg.fpr, eps=0.2)
    weak = e.figure.axes[0].get_title()
    e.set(attack="PGD", eps=0.3)
    strong = e.figure.axes[0].get_title()
    assert weak != strong and "attack success" in strong
    auroc = float(e.figure.axes[1].get_legend().get_texts()[0].get_text().split()[-1])
    assert 0.0 <= auroc <= 1.0
