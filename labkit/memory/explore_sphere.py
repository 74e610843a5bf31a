"""Notebook 02d's explorer: tokens on the sphere under normalise-then-attend, layer by layer, live in JupyterLab
(see :mod:`labkit.explore`).

Controls: the inverse temperature β, the depth shown, the number of tokens, the attention mixing α and the draw of
initial tokens. Left: the tokens on S² at that depth (colour = cluster, :func:`~labkit.memory.attention.cluster_labels`
at ``cluster_angle``), with their paths so far; right: the number of clusters and the mean pairwise cosine against
depth (:func:`~labkit.memory.attention.token_dynamics`), the shown depth marked.
"""

import ipywidgets as w
import numpy as np

from labkit.explore import Explorer
from labkit.memory import attention

__all__ = ["sphere_explorer"]


def sphere_explorer(
    beta: float = 9.0,
    depth: int = 30,
    n_tokens: int = 32,
    alpha: float = 0.5,
    cluster_angle: float = 0.1,
    max_depth: int = 300,
    seed: int = 0,
) -> Explorer:
    """The explorer, starting at ``beta``, ``depth``, ``n_tokens`` and ``alpha`` (tokens in 3 dimensions)."""
    style = {"description_width": "80px"}
    controls = {
        "beta": w.FloatLogSlider(beta, base=10, min=-0.5, max=2.5, description="β", style=style),
        "depth": w.IntSlider(depth, min=0, max=max_depth, description="depth", style=style),
        "n_tokens": w.IntSlider(n_tokens, min=2, max=128, description="tokens", style=style),
        "alpha": w.FloatSlider(alpha, min=0.05, max=1.0, step=0.05, description="α (mixing)", style=style),
        "draw": w.IntSlider(seed, min=0, max=20, description="initial draw", style=style),
    }

    def draw(fig, beta, depth, n_tokens, alpha, draw):
        x0 = attention.random_sphere_points((n_tokens,), 3, draw)
        xs = attention.token_dynamics(x0, beta, max_depth, alpha)  # (max_depth + 1, n, 3)
        labels = attention.cluster_labels(xs[depth], cluster_angle)
        ax3 = fig.add_subplot(1, 2, 1, projection="3d")
        u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 24), np.linspace(0, np.pi, 12))
        ax3.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
        for i in range(n_tokens):
            ax3.plot(*xs[: depth + 1, i].T, color="0.6", lw=0.6)
        ax3.scatter(*xs[depth].T, c=labels, cmap="tab10", s=25, depthshade=False)
        ax3.scatter(*x0.T, c="k", s=4, marker=".", label="start")
        ax3.set_box_aspect((1, 1, 1))
        for axis in (ax3.xaxis, ax3.yaxis, ax3.zaxis):
            axis.set_ticks([-1, 0, 1])
        ax3.set_title(f"depth {depth}: {labels.max() + 1} cluster(s) at angle < {cluster_angle:g} rad")
        ax3.set_xlabel("x₁")
        ax3.set_ylabel("x₂")
        ax3.set_zlabel("x₃")
        ax3.legend(loc="upper left", fontsize=8)
        layers = np.arange(max_depth + 1)
        ax = fig.add_subplot(1, 2, 2)
        ax.plot(layers, attention.cluster_count(xs, cluster_angle), color="tab:blue", label="clusters")
        ax.set_xlabel("depth (layers)")
        ax.set_ylabel("number of clusters", color="tab:blue")
        ax.axvline(depth, color="0.3", ls=":")
        ax.set_ylim(0, n_tokens + 1)
        twin = ax.twinx()
        twin.plot(layers, attention.mean_pairwise_cosine(xs), color="tab:orange", label="mean pairwise cosine")
        twin.set_ylabel("mean pairwise cosine", color="tab:orange")
        twin.set_ylim(-0.05, 1.05)
        ax.set_title(f"β = {beta:.3g}, α = {alpha:g}, {n_tokens} tokens on S²")
        ax.grid(alpha=0.3)

    return Explorer(
        controls, draw, title="Explore: normalise + attention clusters tokens on the sphere", figsize=(11.0, 4.6)
    )
