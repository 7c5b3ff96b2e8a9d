"""The shared base of every dock widget: layer pickers, a worker with progress and cancel,
errors as notifications.

Long work runs in a napari worker, so the viewer never freezes. Two kinds of work run
there, and this is the one place that adapts them to napari:

- a dock's own generator (:meth:`NicheWidget.start`): each ``yield fraction, message``
  moves the bar and is a point where Cancel takes effect;
- a function of the project's progress protocol, ``fn(..., progress=progress)`` with
  ``progress(fraction, message)`` (:mod:`napari_niche.core.progress`), run by
  :meth:`NicheWidget.start_reporting`: its reports reach the bar through a queued Qt
  signal from the worker thread, and after Cancel the next report raises
  :class:`Cancelled`, which stops the function there. No thread runs inside the worker.

A :class:`NicheError` raised by the core is shown as a plain napari notification, and no
layer is touched, because results are written only once the work has finished.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtCore import QEvent, QObject, QSize, Qt, Signal
from qtpy.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_niche._widgets._layers import OUTPUT_KEY, TRANSIENT_OUTPUTS, default_layer
from napari_niche.core.errors import NicheError
from napari_niche.core.progress import Progress

if TYPE_CHECKING:
    import napari

#: What a dock's worker generator yields: (fraction done in [0, 1], message).
ProgressReport = tuple[float, str]


def _choice_values(combo) -> list:
    """The values a magicgui ComboBox offers (its choices are values or (text, value))."""
    return [c[1] if isinstance(c, tuple) else c for c in combo.choices]


_NUMPY_SCALAR = re.compile(
    r"np\.(?:float|int|uint|complex|longdouble|str_|bytes_|bool_?|datetime|timedelta)\d*_?"
    r"\((['\"]?)(.*?)\1\)"
)
_NUMPY_BOOL = re.compile(r"np\.(True|False)_")


def plain_text(message: str) -> str:
    """A message with numpy scalar reprs written as plain values.

    ``"scale (np.float64(1.0), np.int64(3))"`` -> ``"scale (1.0, 3)"``. Every dock passes
    what it shows (notifications, status lines) through this, so a number formatted with
    ``repr`` anywhere below (numpy 2 prints its scalars so) never reaches the user as code.
    """
    return _NUMPY_BOOL.sub(r"\1", _NUMPY_SCALAR.sub(r"\2", str(message)))


class Cancelled(Exception):
    """Raised by a dock's :meth:`NicheWidget.report_progress` once Cancel was pressed.

    Not a :class:`NicheError`: it is no mistake of the user's, and it unwinds a core
    function (e.g. random-cell placement between two batches) back to the worker.
    """


class _Relay(QObject):
    """Carries progress reported in a worker thread to the dock in the GUI thread."""

    progress = Signal(object)


class _Failed:
    """Returned by a worker instead of raising, so napari shows no traceback dialog."""

    def __init__(self, message: str, *, cancelled: bool = False):
        self.message = message
        self.cancelled = cancelled


def _calling(fn: Callable[..., Any], progress: Progress, *args, **kwargs):
    """Worker generator around ``fn(*args, progress=progress, **kwargs)``.

    ``fn`` reports through ``progress`` itself (from the worker thread); the one ``yield``
    only makes this a napari generator worker, whose result comes back by ``returned``.
    """
    yield 0.0, "Starting…"
    return fn(*args, progress=progress, **kwargs)


def _guarded(fn: Callable[..., Generator[ProgressReport, None, Any]]):
    def run(*args, **kwargs):
        try:
            result = yield from fn(*args, **kwargs)
        except NicheError as err:
            return _Failed(str(err))
        except Cancelled:
            return _Failed("", cancelled=True)
        return result

    return run


#: The height below which a dock scrolls instead of pushing the main window taller: three
#: docks at this height, with their title bars, fit a 1080-px screen next to napari's own.
#: What a dock asks for at least (px); small enough that all eight docks open together, as
#: a user following the README ends up with, keep the window within a 1080-px screen.
MIN_DOCK_HEIGHT = 100


class _VerticalScroll(QScrollArea):
    """A scroll area that scrolls vertically and is as wide as its content needs.

    A plain ``QScrollArea`` reports a small minimum size in both directions, so a dock would
    scroll sideways too; this one keeps the content's minimum width and asks for only
    :data:`MIN_DOCK_HEIGHT` of height, however tall its content is.
    """

    def __init__(self, content: QWidget):
        super().__init__()
        self.setWidget(content)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        # The dock keeps the content's width (minimumSizeHint below); should it be made
        # narrower all the same, a scroll bar appears instead of cutting controls off.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        # Preferred, not a scroll area's Expanding: room beyond what a dock asks for is
        # shared between the docks instead of going to whichever was added last
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        content.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's size changed: the dock must hear of it
        return super().eventFilter(watched, event)

    def _extra_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        content = self.widget().minimumSizeHint()
        return QSize(content.width() + self._extra_width(), min(content.height(), MIN_DOCK_HEIGHT))

    def sizeHint(self) -> QSize:
        content = self.widget().sizeHint()
        return QSize(content.width() + self._extra_width(), content.height())


def scrolling_layout(widget: QWidget, *, grow: bool = False) -> QVBoxLayout:
    """Give ``widget`` a vertical scroll area and return the layout inside it.

    Every dock builds its content into this layout, so its minimum height is small and
    any three docks open together fit a laptop screen; taller content scrolls. ``grow``:
    the content (a plot, a table) takes all the height the dock has; without it napari
    puts an empty stretch under the scroll area and a plot keeps its smallest size.
    """
    content = QWidget()
    inner = QVBoxLayout(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _VerticalScroll(content)
    if grow:
        area.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    outer.addWidget(area)
    return inner


class NicheWidget(QWidget):
    """A dock widget with a magicgui form, a run button, a progress bar and Cancel.

    Subclasses fill :attr:`form`, implement :meth:`run` and start their work with
    :meth:`start` (a generator) or :meth:`start_reporting` (a progress-protocol function).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the dock works on (napari passes it when it opens the dock).
    """

    run_text = "Run"

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.form = Container(labels=True)
        self.run_button = PushButton(text=self.run_text)
        self.run_button.changed.connect(self._on_run_clicked)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.worker = None
        self._stop = threading.Event()
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)

        row = QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        layout = self._content_layout = scrolling_layout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.run_button.native)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._layer_combos: list[ComboBox] = []
        self._defaults: dict[int, tuple] = {}  # id(combo) -> how to choose its default
        self._user_chosen: dict[int, Any] = {}  # id(combo) -> the layer the user picked
        self._choosing = False
        self.viewer.layers.events.inserted.connect(self._reset_choices)
        self.viewer.layers.events.removed.connect(self._reset_choices)
        self.viewer.layers.events.moved.connect(self._reset_choices)

    def layout(self) -> QVBoxLayout:
        """The layout inside the dock's scroll area, where subclasses add their controls."""
        return self._content_layout

    # -- layer pickers --------------------------------------------------------------------
    def layer_combo(
        self,
        label: str,
        layer_types: tuple[type, ...],
        *,
        optional=False,
        words: tuple[str, ...] = (),
        prefer=None,
    ):
        """A combo box of the viewer's layers of the given types, kept up to date.

        It starts on :func:`default_layer` (``words``, ``prefer``) and follows new layers
        until the user picks one; an optional one starts on "(none)" unless a layer
        ``prefer`` accepts exists.
        """

        def choices(_widget=None):
            layers = [
                (layer.name, layer)
                for layer in self.viewer.layers
                if isinstance(layer, layer_types)
                and layer.metadata.get(OUTPUT_KEY) not in TRANSIENT_OUTPUTS
            ]
            return ([("(none)", None)] if optional else []) + layers

        # The explicit "(none)" choice carries None; magicgui's own nullable entry would add
        # a second, blank-looking "-----" entry for the same value.
        combo = ComboBox(label=label, choices=choices, nullable=False)
        self._layer_combos.append(combo)
        self.follow_default(combo, words=words, prefer=prefer, optional=optional)
        return combo

    def follow_default(self, combo, *, words=(), prefer=None, optional=False) -> None:
        """Keep ``combo`` on the best layer (see :func:`default_layer`) until a user choice."""
        self._defaults[id(combo)] = (combo, words, prefer, optional)
        combo.changed.connect(lambda _v, c=combo: self._on_combo_changed(c))
        self._choose_default(combo)

    def _on_combo_changed(self, combo) -> None:
        if not self._choosing:
            self._user_chosen[id(combo)] = combo.value

    def _choose_default(self, combo) -> None:
        _, words, prefer, optional = self._defaults[id(combo)]
        current = combo.value
        if id(combo) in self._user_chosen:
            if self._user_chosen[id(combo)] is current:
                return  # the user's choice stands
            del self._user_chosen[id(combo)]  # their layer was removed
        layers = [v for v in _choice_values(combo) if v is not None]
        best = default_layer(layers, words=words, prefer=prefer)
        if optional and (best is None or prefer is None or not prefer(best)):
            best = None
        if best is not current and (best is not None or optional):
            self._choosing = True
            try:
                combo.value = best
            finally:
                self._choosing = False

    def _reset_choices(self, event=None):
        try:
            self._choosing = True  # a value moved by a layer change is no user choice
            try:
                for combo in self._layer_combos:
                    combo.reset_choices()
            finally:
                self._choosing = False
            for combo, *_ in list(self._defaults.values()):
                self._choose_default(combo)
        except RuntimeError:  # the dock was closed and Qt deleted the widget
            self._disconnect_viewer()

    def _disconnect_viewer(self):
        for emitter in (
            self.viewer.layers.events.inserted,
            self.viewer.layers.events.removed,
            self.viewer.layers.events.moved,
        ):
            emitter.disconnect(self._reset_choices)

    # -- running work -----------------------------------------------------------------------
    def _on_run_clicked(self, _=None):
        self.run()

    def run(self):  # pragma: no cover - subclasses implement
        raise NotImplementedError

    def start(
        self,
        work: Callable[..., Generator[ProgressReport, None, Any]],
        on_done: Callable[[Any], None],
        *args,
        **kwargs,
    ):
        """Run ``work(*args)`` in a worker; call ``on_done(result)`` in the GUI thread."""
        from napari.qt.threading import create_worker

        if self.worker is not None:
            self.notify("The previous run is still going: wait or cancel it first.")
            return None
        worker = create_worker(_guarded(work), *args, _start_thread=False, **kwargs)
        self._stop.clear()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_returned(result, on_done))
        worker.aborted.connect(self._on_cancelled)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._set_busy(True)
        worker.start()
        return worker

    def start_reporting(
        self, fn: Callable[..., Any], on_done: Callable[[Any], None], *args, **kwargs
    ):
        """Run ``fn(*args, progress=..., **kwargs)``, a function of the progress protocol,
        in a worker; call ``on_done(result)`` in the GUI thread.

        ``progress`` is :meth:`report_progress`: the bar and the status follow
        ``fn``'s reports, and after Cancel the next report raises :class:`Cancelled`.
        """
        return self.start(_calling, on_done, fn, self.report_progress, *args, **kwargs)

    def cancel(self):
        """Stop the running work: at its next ``yield`` or its next progress report."""
        self._stop.set()  # a core function stops at its next report_progress
        if self.worker is not None:
            self.worker.quit()  # the worker stops at its next yield

    def report_progress(self, fraction: float, message: str) -> None:
        """The project's progress callback for core functions run in this dock's worker.

        Safe to call from the worker thread: the bar and status follow through a queued
        Qt signal. After Cancel it raises :class:`Cancelled`, so long core work (random
        cells at 999 realisations) stops at its next report instead of running to the end.
        """
        if self._stop.is_set():
            raise Cancelled()
        self._relay.progress.emit((float(fraction), str(message)))

    def _on_cancelled(self):
        self._set_status("Cancelled; no layer was changed.")

    def _on_progress(self, value: ProgressReport):
        fraction, message = value
        self.progress.setValue(int(round(100 * fraction)))
        self._set_status(message)

    def _on_returned(self, result, on_done):
        if isinstance(result, _Failed):
            if result.cancelled:
                self._on_cancelled()
            else:
                self.notify(result.message, error=True)
            return
        try:
            on_done(result)
        except NicheError as err:
            self.notify(str(err), error=True)

    def _on_finished(self):
        if self._stop.is_set():  # a progress report queued before Cancel came in after it
            self._on_cancelled()
        self.worker = None
        self._set_busy(False)

    def _set_busy(self, busy: bool):
        self.run_button.enabled = not busy
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setValue(0)

    def _set_status(self, text: str):
        self.status.setText(plain_text(text))

    @contextmanager
    def reporting(self) -> Iterator[None]:
        """Show a :class:`NicheError` or ``OSError`` of the block as an error notification.

        The rest of the block is skipped and the error goes no further, so a button's
        handler reads ``with self.reporting(): check inputs; start the work``.
        """
        try:
            yield
        except (NicheError, OSError) as err:
            self.notify(str(err), error=True)

    def notify(self, message: str, *, error: bool = False, warning: bool = False):
        """Tell the user in a napari notification and in the widget's status line."""
        from napari.utils.notifications import show_error, show_info, show_warning

        message = plain_text(message)
        self._set_status(message)
        (show_error if error else show_warning if warning else show_info)(message)
