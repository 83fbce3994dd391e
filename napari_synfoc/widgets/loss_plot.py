"""A live plot of the SynFoC loss terms and alpha that never stalls the UI.

Points are appended as they arrive (cheap); a timer refreshes the canvas at most every
``redraw_ms`` (default 500 ms) and only when something changed.  A refresh is a *blit*: the axes,
ticks and legend are rendered once into a cached background, and only the curves are drawn on
top of it (a few ms).  The full, slow render (~0.1-0.4 s on a busy 2-core CPU) happens only when
the axes must change: a new curve, or a value outside the current limits.  The x axis spans the
whole run (``set_run``) and the log-scale y axis grows in whole decades, so that is rare.
"""

from __future__ import annotations

import math

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

# The curves worth watching; other keys (CE/Dice parts, fractions) are left out of the plot.
PLOT_KEYS = ("loss", "sup_unet", "sup_fm", "unsup_unet", "unsup_fm", "l_c", "l_d")
_BG = "#262930"  # napari's dark theme background
_FG = "#d0d4dc"
_ALPHA = "#ffcc66"


class LossPlot(QWidget):
    """Loss terms (left axis, log scale) and alpha (right axis, 0..1) against the iteration."""

    def __init__(self, parent: QWidget | None = None, redraw_ms: int = 500):
        super().__init__(parent)
        self.figure = Figure(figsize=(3.2, 2.0), dpi=90, facecolor=_BG, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(180)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self.ax = self.figure.add_subplot(111)
        self.ax_alpha = self.ax.twinx()
        for ax in (self.ax, self.ax_alpha):
            ax.set_facecolor("none")
            ax.tick_params(colors=_FG, labelsize=7)
            for sp in ax.spines.values():
                sp.set_color("#5a626c")
        self.ax.set_facecolor(_BG)
        self.ax.set_yscale("log")
        self.ax.set_xlabel("iteration", color=_FG, fontsize=7)
        self.ax.set_ylabel("loss", color=_FG, fontsize=7)
        self.ax_alpha.set_ylabel("α", color=_ALPHA, fontsize=8)
        self.ax_alpha.set_ylim(0, 1)
        self.iterations: list[int] = []
        self.series: dict[str, list[float]] = {}
        self.alpha: list[float] = []
        self._lines: dict[str, object] = {}
        (self._alpha_line,) = self.ax_alpha.plot(
            [], [], color=_ALPHA, lw=1.2, ls="--", label="α", animated=True
        )
        self._xlim = (0.0, 1.0)
        self._ylim = (0.1, 10.0)
        self._apply_limits()
        self._background = None
        self._dirty = False
        self._needs_full = True
        self.full_draws = 0
        self.blits = 0
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self._timer = QTimer(self)
        self._timer.setInterval(int(redraw_ms))
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

    # ------------------------------------------------------------------ data
    def stop(self) -> None:
        """Stop the periodic redraw (the dock is closing)."""
        self._timer.stop()

    def set_run(self, first: int, last: int) -> None:
        """Fix the x axis to a run's iterations (called when its length is known)."""
        lo, hi = float(first), float(max(last, first + 1))
        if (lo, hi) != self._xlim:
            self._xlim = (lo, hi)
            self._needs_full = True
            self._dirty = True

    def clear(self) -> None:
        """Forget all points (a new training run)."""
        self.iterations.clear()
        self.series.clear()
        self.alpha.clear()
        for line in self._lines.values():
            line.remove()
        self._lines.clear()
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        self._alpha_line.set_data([], [])
        self._ylim = (0.1, 10.0)
        self._needs_full = True
        self._dirty = True

    def add_point(self, iteration: int, losses: dict[str, float], alpha: float) -> None:
        """Record one iteration's losses and alpha (no drawing here)."""
        n = len(self.iterations)
        self.iterations.append(int(iteration))
        shown = {k: v for k, v in losses.items() if k in PLOT_KEYS} or losses
        for key, val in shown.items():
            ys = self.series.setdefault(key, [float("nan")] * n)
            ys.append(float(val))
            if key not in self._lines:
                self._needs_full = True
            self._grow_ylim(float(val))
        for ys in self.series.values():
            if len(ys) < n + 1:
                ys.append(float("nan"))
        self.alpha.append(float(alpha))
        if iteration > self._xlim[1] or iteration < self._xlim[0]:
            lo = min(self._xlim[0], iteration)
            self._xlim = (lo, max(self._xlim[1] * 2, iteration, lo + 1))
            self._needs_full = True
        self._dirty = True

    def _grow_ylim(self, v: float) -> None:
        if not (v > 0 and math.isfinite(v)):
            return
        lo, hi = self._ylim
        if v < lo or v > hi:
            self._ylim = (
                min(lo, 10 ** math.floor(math.log10(v))),
                max(hi, 10 ** math.ceil(math.log10(v) + 1e-9)),
            )
            self._needs_full = True

    # ------------------------------------------------------------------ drawing
    def _apply_limits(self) -> None:
        self.ax.set_xlim(*self._xlim)
        self.ax.set_ylim(*self._ylim)

    def _sync_lines(self) -> None:
        x = self.iterations
        for key, ys in self.series.items():
            line = self._lines.get(key)
            if line is None:
                (line,) = self.ax.plot([], [], lw=1.0, label=key, animated=True)
                self._lines[key] = line
            line.set_data(x, ys)
        self._alpha_line.set_data(x, self.alpha)

    def _on_draw(self, _event) -> None:
        """After a full render: cache the background, then paint the curves on top."""
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_curves()

    def _draw_curves(self) -> None:
        for line in self._lines.values():
            self.ax.draw_artist(line)
        self.ax_alpha.draw_artist(self._alpha_line)

    def redraw(self) -> None:
        """Refresh if new points arrived: a blit, or a full render when the axes changed."""
        if not self._dirty or not self.isVisible():
            return
        self._dirty = False
        self._sync_lines()
        if self._needs_full or self._background is None:
            self._needs_full = False
            self._apply_limits()
            handles = [*self._lines.values(), self._alpha_line]
            self.ax.legend(
                handles=handles, fontsize=6, loc="upper right", facecolor=_BG,
                labelcolor=_FG, framealpha=0.6, ncols=2,
            )  # fmt: skip
            self.canvas.draw()  # the draw_event callback caches the background
            self.full_draws += 1
            return
        self.canvas.restore_region(self._background)
        self._draw_curves()
        self.canvas.blit(self.figure.bbox)
        self.blits += 1
