"""The matplotlib base widget of the docks: one figure, its toolbar, napari's theme.

Every plot in a dock (the niche plot's two views, the threshold histogram, the motility
figures, the pooled experiment figures) sits in a :class:`MplCanvasWidget`. A dock either
subclasses it and overrides :meth:`~MplCanvasWidget.draw`, or gives it a ``draw``
function; :meth:`~MplCanvasWidget.redraw` draws and schedules a paint. Given a viewer,
the figure takes napari's theme colours and follows the theme when the user changes it;
without one it keeps matplotlib's white paper (figures meant for a report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from napari_niche.style import DARK, LIGHT, PlotStyle

if TYPE_CHECKING:
    import napari

__all__ = ["MplCanvasWidget", "theme_style"]


def theme_style(theme_name: str) -> PlotStyle:
    """The plot style that matches a napari theme (background, text colour)."""
    from napari.utils.theme import get_theme

    try:
        theme = get_theme(theme_name)
    except ValueError:
        return DARK
    base = LIGHT if getattr(theme, "type", "dark") == "light" else DARK
    return replace(base, background=theme.background.as_hex(), foreground=theme.text.as_hex())


class MplCanvasWidget(QWidget):
    """A matplotlib figure in a dock, with matplotlib's toolbar and napari's theme.

    Parameters
    ----------
    viewer : napari.Viewer, optional
        The viewer whose theme the figure follows (background at once, and a
        :meth:`redraw` whenever the theme changes). None: no theme, white paper.
    figure : Figure, optional
        The figure to show; default a new, empty one of ``figsize``.
    figsize : (float, float)
        Size in inches of the new figure.
    toolbar : bool
        Show matplotlib's navigation toolbar (pan, zoom, save) above the canvas.
    controls : QWidget, optional
        A row of controls above the toolbar.
    minimum_size : (int, int)
        The canvas's minimum width and height (px).
    draw : callable, optional
        What :meth:`draw` does, for an owner that does not subclass.

    Attributes
    ----------
    figure, canvas, toolbar : the matplotlib figure, its Qt canvas and toolbar (or None).
    """

    def __init__(
        self,
        viewer: napari.Viewer | None = None,
        *,
        figure: Figure | None = None,
        figsize: tuple[float, float] = (4.0, 4.0),
        toolbar: bool = True,
        controls: QWidget | None = None,
        minimum_size: tuple[int, int] = (300, 300),
        draw: Callable[[], None] | None = None,
    ):
        super().__init__()
        self.viewer = viewer
        self._draw = draw
        if figure is None:
            figure = Figure(figsize=figsize, layout="constrained")
        self.figure = figure
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(*minimum_size)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.toolbar = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        if controls is not None:
            layout.addWidget(controls)
        if toolbar:
            self.toolbar = NavigationToolbar2QT(self.canvas, self)
            self.toolbar.setIconSize(self.toolbar.iconSize() * 0.8)
            layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        if viewer is not None:
            self.figure.set_facecolor(self.style.background)
            viewer.events.theme.connect(self._on_theme)

    @property
    def style(self) -> PlotStyle:
        """The plot style of the viewer's theme (``LIGHT`` without a viewer)."""
        return LIGHT if self.viewer is None else theme_style(self.viewer.theme)

    def draw(self) -> None:
        """Draw the figure's content; subclasses override (default: the ``draw`` given)."""
        if self._draw is not None:
            self._draw()

    def redraw(self) -> None:
        """:meth:`draw`, then paint the canvas at the next chance."""
        self.draw()
        self.canvas.draw_idle()

    def _on_theme(self, _event=None) -> None:
        try:
            self.canvas.isVisible()  # raises once Qt deleted the widget (its dock closed)
        except RuntimeError:
            self.viewer.events.theme.disconnect(self._on_theme)
            return
        self.figure.set_facecolor(self.style.background)
        self.redraw()
