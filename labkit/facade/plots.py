"""Figures of notebook 04_facade: the pseudo-class Sankey diagram (matplotlib patches), ROC curves, the AUROC table,
histograms of FACADE's statistics clean vs adversarial, class-manifold geometry across layers, and the λ sweep."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.path import Path
from sklearn.metrics import roc_curve

from labkit.heatmap import annotated_heatmap

__all__ = ["sankey_figure", "roc_figure", "table_figure", "histogram_figure", "geometry_figure", "lam_sweep_figure"]

_CLASS_COLOURS = plt.get_cmap("tab10")


def _node_order(columns: np.ndarray, true: np.ndarray, n_states: list[int]) -> list[np.ndarray]:
    """Pseudo-classes of each column ordered by the mean true class of their members (fewer crossings)."""
    orders = []
    for l, k in enumerate(n_states):
        counts = np.bincount(columns[:, l], minlength=k)
        mean_class = np.bincount(columns[:, l], weights=true, minlength=k) / np.maximum(counts, 1)
        orders.append(np.lexsort((-counts, mean_class)))
    return orders


def sankey_figure(true: np.ndarray, paths: np.ndarray, layer_names: list[str], title: str, gap: float = 0.004):
    """True classes → pseudo-classes of each layer: node heights ∝ members, ribbons coloured by true class."""
    columns = np.column_stack([true, paths])
    n_states = [int(columns[:, l].max()) + 1 for l in range(columns.shape[1])]
    orders = _node_order(columns, true, n_states)
    n = len(true)
    tops = []  # top y of every node, per column
    for l, k in enumerate(n_states):
        counts = np.bincount(columns[:, l], minlength=k)
        heights = counts[orders[l]] / n
        starts = np.concatenate([[0], np.cumsum(heights + gap)[:-1]])
        top = np.zeros(k)
        top[orders[l]] = starts
        tops.append(top)
    fig, ax = plt.subplots(figsize=(10, 6))
    width = 0.06
    for l in range(len(n_states) - 1):
        out_off, in_off = tops[l].copy(), tops[l + 1].copy()
        # ribbons: one per (source, target, true class), drawn in node order so they stack cleanly
        keys = np.column_stack([columns[:, l], columns[:, l + 1], true])
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        rank_src = np.argsort(orders[l])
        rank_dst = np.argsort(orders[l + 1])
        for (s, t, c), m in sorted(zip(map(tuple, uniq), counts), key=lambda r: (rank_src[r[0][0]], rank_dst[r[0][1]])):
            h = m / n
            y0, y1 = out_off[s], in_off[t]
            out_off[s] += h
            in_off[t] += h
            x0, x1 = l + width / 2, l + 1 - width / 2
            xm = (x0 + x1) / 2
            verts = [
                (x0, y0),
                (xm, y0),
                (xm, y1),
                (x1, y1),
                (x1, y1 + h),
                (xm, y1 + h),
                (xm, y0 + h),
                (x0, y0 + h),
                (x0, y0),
            ]
            codes = [
                Path.MOVETO,
                Path.CURVE4,
                Path.CURVE4,
                Path.CURVE4,
                Path.LINETO,
                Path.CURVE4,
                Path.CURVE4,
                Path.CURVE4,
                Path.CLOSEPOLY,
            ]
            ax.add_patch(PathPatch(Path(verts, codes), facecolor=_CLASS_COLOURS(c), alpha=0.45, lw=0))
    for l, k in enumerate(n_states):
        counts = np.bincount(columns[:, l], minlength=k)
        for s in range(k):
            if counts[s]:
                ax.add_patch(Rectangle((l - width / 2, tops[l][s]), width, counts[s] / n, facecolor="0.25", lw=0))
                if l == 0:
                    ax.text(l - width, tops[l][s] + counts[s] / (2 * n), str(s), ha="right", va="center", fontsize=8)
    ax.set_xticks(range(len(n_states)))
    ax.set_xticklabels([f"{name}\n({k} nodes)" for name, k in zip(["true class", *layer_names], n_states)])
    ax.set_xlim(-0.3, len(n_states) - 0.7)
    ax.set_ylim(max(t.max() for t in tops) + 0.03, -0.02)
    ax.set_yticks([])
    ax.set_ylabel("share of clean training inputs (ribbon height)")
    ax.set_title(title)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return fig


def roc_figure(scores: dict, attacks: list[str], detectors: list[str], title: str):
    """One panel per attack: ROC curve of every detector (clean = negatives, successful adversarial = positives)."""
    fig, axes = plt.subplots(1, len(attacks), figsize=(4 * len(attacks), 4.2), sharey=True)
    for ax, attack in zip(np.atleast_1d(axes), attacks):
        for i, det in enumerate(detectors):
            s = scores[det]
            labels = np.r_[np.zeros(len(s["clean"])), np.ones(len(s[attack]))]
            fpr, tpr, _ = roc_curve(labels, np.r_[s["clean"], s[attack]], drop_intermediate=False)
            ax.step(
                fpr,
                tpr,
                where="post",
                lw=2.2 if det.startswith("FACADE") else 1.2,
                color="k" if det.startswith("FACADE") else plt.get_cmap("tab10")(i),
                label=det,
            )
        ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1)
        ax.axvline(0.05, color="0.8", lw=0.8)
        ax.set_title(attack)
        ax.set_xlabel("false-positive rate (clean flagged)")
    np.atleast_1d(axes)[0].set_ylabel("true-positive rate (adversarial flagged)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    return fig


def table_figure(table: dict, attacks: list[str], title: str, metric: str = "AUROC"):
    """Heat map of ``table[detector][attack] = (mean, se)`` with the numbers written in."""
    dets = list(table)
    fig, ax = plt.subplots(figsize=(2.5 + 1.6 * len(attacks), 0.42 * len(dets) + 1.4))
    vmin = 0.5 if metric == "AUROC" else 0
    im = annotated_heatmap(ax, table, dets, attacks, cmap="viridis", vmin=vmin, vmax=1, fmt=".3f")
    ax.set_xticklabels(attacks)
    ax.set_yticklabels(dets)
    fig.colorbar(im, ax=ax, label=f"{metric} (mean over seeds)")
    ax.set_title(title)
    return fig


_STAT_LABELS = {
    "path": "path NLL (nats)",
    "circuit": "circuit NLL (nats)",
    "radius": "Σ_l log(distance / radius)",
    "residual": "Σ_l log(residual / pseudo-class residual)",
    "geometry": "−log geometry alignment",
}


def histogram_figure(raw: dict, attacks: list[str], terms: tuple, title: str):
    """Per FACADE statistic: histograms of clean and of each attack's successful adversarial inputs."""
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), 3.6))
    for ax, term in zip(axes, terms):
        values = [raw["clean"][term], *(raw[a][term] for a in attacks)]
        bins = np.histogram_bin_edges(np.concatenate(values), bins=30)
        ax.hist(values[0], bins=bins, density=True, color="0.6", alpha=0.7, label="clean")
        for i, (a, v) in enumerate(zip(attacks, values[1:])):
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.5, color=plt.get_cmap("tab10")(i), label=a)
        ax.set_xlabel(_STAT_LABELS.get(term, term))
        ax.set_title(term)
    axes[0].set_ylabel("density")
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def geometry_figure(trajectories: dict, pseudo_geometry: list, layer_names: list[str], title: str):
    """Left, middle: radius and participation-ratio dimension of every predicted class's cloud, layer by layer.
    Right: radius against dimension of every pseudo-class (≥ 5 members) of every hidden layer, area ∝ members."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label in zip(axes, ("log_radius", "log_dimension"), ("radius R", "dimension D (participation ratio)")):
        values = np.exp(trajectories[key])
        for g, row in enumerate(values):
            ax.plot(range(len(row)), row, "o-", color=_CLASS_COLOURS(g), lw=1, ms=3, label=f"class {g}")
        ax.set_yscale("log")
        ax.set_xticks(range(values.shape[1]))
        ax.set_xticklabels(layer_names)
        ax.set_xlabel("representation")
        ax.set_ylabel(label)
        ax.set_title(f"class manifolds: {label.split(' (')[0]}")
    axes[1].legend(fontsize=6, ncol=2)
    for l, table in enumerate(pseudo_geometry):
        axes[2].scatter(
            table["radius"],
            table["dimension"],
            s=4 + table["size"] / 3,
            alpha=0.6,
            color=plt.get_cmap("viridis")(l / max(len(pseudo_geometry) - 1, 1)),
            label=layer_names[l],
        )
    axes[2].set_xscale("log")
    axes[2].set_xlabel("radius R of the pseudo-class")
    axes[2].set_ylabel("dimension D of the pseudo-class")
    axes[2].set_title("pseudo-classes (area ∝ members)")
    axes[2].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def lam_sweep_figure(sweep, chosen: float, title: str):
    """Pseudo-classes per layer, clean false-positive rate and AUROC of the FACADE total against λ
    (``sweep``: a :class:`labkit.facade.experiment.LambdaSweep`)."""
    lam = np.array(sweep.lam)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    counts = np.array(sweep.n_pseudo_classes)
    for l in range(counts.shape[1]):
        axes[0].plot(lam, counts[:, l], "o-", label=f"hidden layer {l + 1}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("pseudo-classes (DP-means clusters)")
    axes[0].legend(fontsize=7)
    axes[1].plot(lam, sweep.clean_fpr, "o-", color="k")
    axes[1].axhline(0.05, color="0.6", ls=":", label="nominal 5%")
    axes[1].set_ylabel("clean test false-positive rate")
    axes[1].legend(fontsize=7)
    for i, (a, v) in enumerate(sweep.auroc.items()):
        axes[2].plot(lam, v, "o-", color=plt.get_cmap("tab10")(i), label=a)
    axes[2].set_ylabel("AUROC of FACADE total")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.axvline(chosen, color="0.8", lw=3, zorder=0)
        ax.set_xlabel("λ (resolution, × median 10-NN distance)")
    fig.suptitle(title)
    return fig
