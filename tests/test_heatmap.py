"""The annotated mean ± SE heat map shared by notebooks 03 and 04 (labkit.heatmap): the text colour of higher
contrast on the colormap's own colour, the numbers written in every cell."""

import matplotlib.pyplot as plt
import pytest

from labkit.heatmap import annotated_heatmap, text_colour


@pytest.mark.parametrize(
    "cmap, value, colour",
    [
        ("viridis", 0.0, "w"),  # dark purple
        ("viridis", 1.0, "k"),  # light yellow
        ("RdBu", 0.0, "w"),  # dark red
        ("RdBu", 0.5, "k"),  # near white
        ("RdBu", 1.0, "w"),  # dark blue
        ("gray", 0.0, "w"),
        ("gray", 1.0, "k"),
    ],
)
def test_text_is_white_on_dark_cells_and_black_on_light_ones(cmap, value, colour):
    assert text_colour(plt.get_cmap(cmap)(value)) == colour


def test_the_switch_is_where_white_and_black_contrast_equally():
    # WCAG: white wins while 1.05 / (L + 0.05) > (L + 0.05) / 0.05, i.e. L < √0.0525 − 0.05 ≈ 0.179 (grey ≈ 0.46)
    assert text_colour((0.45, 0.45, 0.45, 1.0)) == "w"
    assert text_colour((0.47, 0.47, 0.47, 1.0)) == "k"
    assert text_colour((0.0, 0.0, 0.0, 0.0)) == "k"  # a transparent (NaN) cell shows the white axes


def test_every_cell_gets_its_mean_and_se_in_row_major_order():
    table = {"a": {"x": (0.1, 0.01), "y": (0.95, 0.02)}, "b": {"x": (0.5, 0.03), "y": (0.75, 0.04)}}
    fig, ax = plt.subplots()
    try:
        im = annotated_heatmap(ax, table, ["a", "b"], ["x", "y"], cmap="RdBu", vmin=0, vmax=1, fmt=".2f")
        assert im.get_array().tolist() == [[0.1, 0.95], [0.5, 0.75]] and im.get_clim() == (0, 1)
        assert im.get_cmap().name == "RdBu"
        texts = [(t.get_position(), t.get_text(), t.get_color()) for t in ax.texts]
        assert texts == [
            ((0, 0), "0.10 ± 0.01", "w"),
            ((1, 0), "0.95 ± 0.02", "w"),
            ((0, 1), "0.50 ± 0.03", "k"),
            ((1, 1), "0.75 ± 0.04", "k"),
        ]
        assert list(ax.get_xticks()) == [0, 1] and list(ax.get_yticks()) == [0, 1]
    finally:
        plt.close(fig)
