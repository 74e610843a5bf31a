"""Explorers: a notebook's fast model behind a few ipywidgets controls, redrawn on every change.

    explorer = Explorer({"d": IntSlider(...), ...}, draw, title="...")
    explorer                     # in JupyterLab: the controls, a status line and the figure

``draw(fig, **values)`` fills a fresh matplotlib figure from the controls' values. The figure is rendered on the
Agg canvas to a PNG shown in an ``ipywidgets.Image`` (as the rig panel does): no frontend extension is needed, the
same code runs in a test, and a test can read what was drawn (``explorer.figure``). An error raised by ``draw``
(e.g. a combination the model does not allow) is shown in the status line and the previous figure stays.

Under the figure pipeline (``LABKIT_HEADLESS=1``, set for its kernels) an explorer renders once, statically, at
its initial values: the executed notebook shows a picture, not dead widgets. The explorers themselves live next
to their models (e.g. :mod:`labkit.collapse.explore`, :mod:`labkit.memory.explore_kde`).
"""

import html
import io
import os
import time
from collections.abc import Callable

import ipywidgets as w
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labkit import repro

__all__ = ["headless", "Explorer"]


def headless() -> bool:
    """True inside the figure pipeline's kernels, where no one can move a slider."""
    return os.environ.get("LABKIT_HEADLESS") == "1"


class Explorer:
    """``controls`` (name → ipywidget with a ``value``) redraw the figure through ``draw(fig, **values)``."""

    def __init__(
        self,
        controls: dict[str, w.ValueWidget],
        draw: Callable[..., None],
        *,
        title: str = "",
        figsize: tuple[float, float] = (10.0, 4.0),
    ):
        self.controls, self.draw, self.title, self.figsize = controls, draw, title, figsize
        self.figure: Figure | None = None
        self.redraws = 0
        self.image = w.Image(format="png", layout=w.Layout(width="100%", max_width=f"{int(figsize[0] * 100)}px"))
        self.status = w.HTML()
        for name, control in controls.items():
            control.observe(lambda _change: self.redraw(), names="value")
            control.add_class(f"labkit-explore-{name.replace('_', '-')}")
        self.image.add_class("labkit-explore-figure")
        self.status.add_class("labkit-explore-status")
        self.widget = w.VBox(
            [w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap")), self.status, self.image]
        )
        self.redraw()

    @property
    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def set(self, **values) -> None:
        """Set controls as a user would (each change redraws)."""
        for name, value in values.items():
            if name not in self.controls:
                raise KeyError(f"unknown control {name!r}; allowed: {', '.join(self.controls)}")
            self.controls[name].value = value

    def redraw(self) -> bool:
        """Draw the figure for the current values; False (and the error in the status line) if ``draw`` raised."""
        start = time.perf_counter()
        self.status.value = "<i>computing…</i>"
        fig = Figure(figsize=self.figsize, layout="constrained")
        FigureCanvasAgg(fig)
        try:
            self.draw(fig, **self.values)
        except (ValueError, ArithmeticError) as e:
            self.status.value = f"<span style='color:#c00'>{html.escape(f'{type(e).__name__}: {e}')}</span>"
            return False
        if self.title:
            fig.suptitle(self.title)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", **repro.SAVEFIG_KWARGS)
        self.figure, self.image.value = fig, buffer.getvalue()
        self.redraws += 1
        self.status.value = f"<small>drawn in {time.perf_counter() - start:.2f} s</small>"
        return True

    def _ipython_display_(self) -> None:
        from IPython.display import Image, display

        if headless():
            display(Image(self.image.value))
        else:
            display(self.widget)
