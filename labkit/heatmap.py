"""The annotated heat map of notebooks 03 and 04: ``table[row][column] = (mean, se)`` drawn as coloured cells with
"mean ± se" written in each.

Each cell's text is black or white, whichever contrasts more with the colour the colormap gives that cell, by the
WCAG 2 contrast ratio (W3C, "Web Content Accessibility Guidelines 2.1", 2018, definitions of relative luminance and
contrast ratio):

    L = 0.2126 R + 0.7152 G + 0.0722 B,   each channel linearised: c ≤ 0.04045 ? c/12.92 : ((c + 0.055)/1.055)^2.4,
    contrast(a, b) = (L_lighter + 0.05) / (L_darker + 0.05),

so the text is white exactly when (1.05)/(L + 0.05) > (L + 0.05)/0.05, i.e. when L < √(1.05 · 0.05) − 0.05 ≈ 0.179.
Reading the colour off the colormap (not the value) makes the rule hold for any map: dark at both ends (RdBu), dark
at one (viridis).
"""

import numpy as np

__all__ = ["text_colour", "annotated_heatmap"]


def text_colour(rgba) -> str:
    """``"w"`` or ``"k"``: the text colour of higher WCAG contrast on the background colour ``rgba`` = (r, g, b, a) in
    [0, 1], composited over the white axes (a colormap's NaN colour is transparent)."""
    r, g, b, a = rgba
    c = a * np.array([r, g, b], dtype=float) + (1.0 - a)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ [0.2126, 0.7152, 0.0722])
    return "w" if 1.05 / (luminance + 0.05) > (luminance + 0.05) / 0.05 else "k"


def annotated_heatmap(ax, table: dict, rows: list, columns: list, *, cmap, vmin: float, vmax: float, fmt: str):
    """Draw ``table[row][column] = (mean, se)`` on ``ax``: the means as an image on ``cmap`` over [vmin, vmax], rows
    top to bottom, "mean ± se" (each formatted with ``fmt``, e.g. ``".2f"``) in every cell in the colour of
    :func:`text_colour`, and a tick at every row and column (the caller labels them). Returns the image, for a
    colour bar."""
    mean = np.array([[table[r][c][0] for c in columns] for r in rows])
    se = np.array([[table[r][c][1] for c in columns] for r in rows])
    im = ax.imshow(mean, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(columns)):
            colour = text_colour(im.cmap(im.norm(mean[i, j])))
            ax.text(j, i, f"{mean[i, j]:{fmt}} ± {se[i, j]:{fmt}}", ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(len(columns)))
    ax.set_yticks(range(len(rows)))
    return im
