"""Figures of notebook 01b (the character-level language model): text panels of what the models write."""

import textwrap

import matplotlib.pyplot as plt

from labkit.collapse.plots import REGIME_COLORS, REGIME_LABELS

__all__ = ["samples_figure"]


def _panel(ax, label: str, body: str, color, width: int) -> None:
    """A framed monospace text panel: ``body`` as it would print (newlines kept, lines wrapped at ``width``), cut to
    the lines that fit the panel."""
    lines = [piece for line in body.split("\n") for piece in (textwrap.wrap(line, width) or [""])]
    fontsize = 6.5
    height_pt = ax.get_position().height * ax.figure.get_figheight() * 72
    fit = max(1, int(height_pt / (1.25 * fontsize)) - 1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(color)
    ax.set_title(label, fontsize=9, color=color, loc="left")
    ax.text(
        0.03,
        0.97,
        "\n".join(lines[:fit]),
        family="monospace",
        fontsize=fontsize,
        va="top",
        ha="left",
        transform=ax.transAxes,
    )


def samples_figure(
    real: str,
    first: str,
    last: dict[str, str],
    n_last: int,
    title: str,
    width: int = 52,
    word_fractions: dict[str, float] | None = None,
):
    """Monospace text panels. Left: a real excerpt, and the text sampled by model 1 (trained on real text, the same
    model in every regime). Right: the text sampled by model ``n_last`` of each regime (``last[regime]``).
    ``word_fractions``, if given, adds each panel's real-word fraction to its title: keys ``"real"`` (the held-out
    control), ``"first"`` and the regimes."""
    n = len(last)
    fractions = word_fractions or {}

    def label(text: str, key: str) -> str:
        if key not in fractions:
            return text
        return f"{text}; {'held-out text: ' if key == 'real' else ''}{fractions[key]:.0%} real words"

    fig = plt.figure(figsize=(9.2, 2.3 * n + 0.5))
    grid = fig.add_gridspec(
        2 * n, 2, hspace=0.35, wspace=0.05, top=1 - 0.55 / (2.3 * n + 0.5), bottom=0.02, left=0.02, right=0.98
    )
    _panel(fig.add_subplot(grid[:n, 0]), label("real text (training corpus)", "real"), real, "0.3", width)
    _panel(
        fig.add_subplot(grid[n:, 0]),
        label("sampled by model 1 (trained on real text; every regime)", "first"),
        first,
        "0.3",
        width,
    )
    for i, (regime, body) in enumerate(last.items()):
        _panel(
            fig.add_subplot(grid[2 * i : 2 * i + 2, 1]),
            label(f"{REGIME_LABELS[regime]}: sampled by model {n_last}", regime),
            body,
            REGIME_COLORS[regime],
            width,
        )
    fig.suptitle(title)
    return fig
