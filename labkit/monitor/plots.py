"""Figures of notebook 03: the monitors × organisms AUROC heat map (a diverging scale, because a monitor can point
the wrong way), clean vs hidden-behaviour score histograms, the poisoning filters, the backdoor's transfer to
distilled students, and the adaptive-attack stress test."""

import matplotlib.pyplot as plt
import numpy as np

from labkit.heatmap import annotated_heatmap

__all__ = ["heatmap_figure", "histogram_figure", "filter_figure", "transfer_figure", "stress_figure"]

_COLOURS = plt.get_cmap("tab10")


def heatmap_figure(table: dict, tasks: list[str], monitors: list[str], title: str):
    """``table[monitor][task] = (mean, se)`` AUROC as a red (below chance) – white (0.5) – blue (1) map."""
    fig, ax = plt.subplots(figsize=(2.6 + 2.0 * len(tasks), 0.45 * len(monitors) + 1.8))
    im = annotated_heatmap(ax, table, monitors, tasks, cmap="RdBu", vmin=0, vmax=1, fmt=".2f")
    ax.set_xticklabels([t.replace(": ", ":\n") for t in tasks], fontsize=8)
    ax.set_yticklabels(monitors, fontsize=8)
    ax.set_xlabel("organism (hidden-behaviour inputs vs clean test inputs)")
    fig.colorbar(im, ax=ax, label="AUROC (mean ± SE over seeds; 0.5 = chance)")
    ax.set_title(title)
    return fig


def histogram_figure(scores: dict, tasks: list[str], monitors: list[str], title: str):
    """Rows = organisms, columns = monitors: score histograms of clean (grey) and hidden-behaviour (colour) inputs,
    each panel clipped to the pooled 0.5–99th percentiles (a few huge Mahalanobis scores would hide the rest)."""
    fig, axes = plt.subplots(len(tasks), len(monitors), figsize=(3.0 * len(monitors), 2.3 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        for j, mon in enumerate(monitors):
            ax = axes[i, j]
            lo, hi = np.percentile(np.r_[scores[task][mon]["clean"], scores[task][mon]["hidden"]], [0.5, 99])
            clean, hidden = (np.clip(scores[task][mon][k], lo, hi) for k in ("clean", "hidden"))
            bins = np.linspace(lo, hi, 31)
            ax.hist(clean, bins=bins, density=True, color="0.6", alpha=0.7, label="clean")
            ax.hist(
                hidden, bins=bins, density=True, histtype="step", lw=1.6, color=_COLOURS(i), label="hidden behaviour"
            )
            if i == 0:
                ax.set_title(mon, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{task}\ndensity", fontsize=8)
            if i == len(tasks) - 1:
                ax.set_xlabel(
                    "anomaly score (higher = flagged;\nclipped to the pooled 0.5–99th percentiles)", fontsize=7
                )
            ax.tick_params(labelsize=7)
        axes[i, -1].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def filter_figure(run, organisms: list[str], table: dict, title: str):
    """Per organism and filter: histograms of the training-sample scores of clean vs poisoned samples (one run, a
    :class:`labkit.monitor.protocol.MonitorRun`), with the AUROC over seeds in the panel title."""
    filters = list(run.filters[organisms[0]])
    poisoned = run.is_poison
    fig, axes = plt.subplots(
        len(organisms), len(filters), figsize=(4.2 * len(filters), 2.8 * len(organisms)), squeeze=False
    )
    for i, org in enumerate(organisms):
        for j, f in enumerate(filters):
            ax = axes[i, j]
            s = run.filters[org][f].scores
            bins = np.histogram_bin_edges(s, bins=40)
            ax.hist(s[~poisoned], bins=bins, color="0.6", alpha=0.7, label=f"clean samples ({(~poisoned).sum()})")
            ax.hist(s[poisoned], bins=bins, color=_COLOURS(3), alpha=0.8, label=f"poisons ({poisoned.sum()})")
            ax.set_yscale("log")
            mean, se = table[org][f]
            ax.set_title(f"{org} · {f}\nAUROC {mean:.2f} ± {se:.2f}", fontsize=9)
            ax.set_xlabel("filter score (higher = suspected poison)", fontsize=8)
            ax.set_ylabel("training samples", fontsize=8)
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return fig


def transfer_figure(
    temperatures: list[float], student: dict, control_student: dict, teacher: tuple, control: tuple, title: str
):
    """Attack success rate and clean accuracy of the distilled students vs temperature (mean ± 2 SE): students of the
    backdoored teacher and, the control, students of the clean model; the teacher's and the clean model's attack
    success as references. ``student[key] = (means, ses)``, likewise ``control_student``."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, key, label in zip(axes, ("attack_success", "accuracy"), ("attack success rate", "clean test accuracy")):
        for run, colour, name in (
            (student, "k", "student of the backdoored teacher"),
            (control_student, _COLOURS(2), "student of the clean model (control)"),
        ):
            mean, se = (np.asarray(v) for v in run[key])
            ax.errorbar(temperatures, mean, 2 * se, fmt="o-", color=colour, capsize=3, label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(temperatures)
        ax.set_xticklabels([f"{t:g}" for t in temperatures])
        ax.set_xlabel("distillation temperature T")
        ax.set_ylabel(label)
    axes[0].axhline(teacher[0], color=_COLOURS(3), ls="--", label=f"backdoored teacher ({teacher[0]:.2f})")
    axes[0].axhline(control[0], color=_COLOURS(2), ls=":", label=f"clean model ({control[0]:.2f})")
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=7, loc="center left")
    fig.suptitle(title)
    return fig


def stress_figure(betas: list[float], auroc: dict, organism: dict, plain: dict, title: str):
    """Monitors' AUROC (left) and the organism's attack success and clean accuracy (right, ``organism[key] =
    (means, ses)``) against the feature-matching weight β of the adaptive backdoor, mean ± 2 SE; short bars at the
    left: the plain corner-patch backdoor."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.0), gridspec_kw={"width_ratios": [1.6, 1]})
    x = np.arange(len(betas))
    for i, (mon, (mean, se)) in enumerate(auroc.items()):
        mean, se = np.asarray(mean), np.asarray(se)
        colour = "k" if mon.startswith("FACADE total") else _COLOURS(i % 10)
        axes[0].errorbar(x, mean, 2 * se, fmt="o-", ms=3, lw=1.3, capsize=2, color=colour, label=mon)
        axes[0].plot([-0.6], [plain[mon]], marker="_", ms=14, mew=2, color=colour)
    axes[0].axhline(0.5, color="0.6", ls=":", lw=1)
    axes[0].set_ylabel("AUROC, triggered vs clean test inputs")
    axes[0].set_ylim(0, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=5, loc="outside lower center")
    for key, label, style in (("attack_success", "attack success rate", "o-"), ("accuracy", "clean accuracy", "s--")):
        mean, se = (np.asarray(v) for v in organism[key])
        axes[1].errorbar(x, mean, 2 * se, fmt=style, color="k", capsize=3, label=label)
    axes[1].set_ylabel("rate on test inputs")
    axes[1].legend(fontsize=8, loc="lower left")
    axes[1].set_ylim(-0.03, 1.03)
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels([f"{b:g}" for b in betas])
        ax.set_xlabel("feature-matching weight β (learned trigger)")
    axes[0].set_xlim(-0.9, len(betas) - 0.5)
    axes[0].text(-0.6, 0.03, "plain\npatch", ha="center", fontsize=7)
    fig.suptitle(title)
    return fig
