"""A live plot of the SynFoC loss terms and alpha that never stalls the UI.

Points are appended as they arrive (cheap); the canvas is redrawn by a timer at most every
``redraw_ms`` (default 500 ms) and only when something changed.
"""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

# The curves worth watching; other keys (CE/Dice parts, fractions) are left out of the plot.
PLOT_KEYS = ("loss", "sup_unet", "sup_fm", "unsup_unet", "unsup_fm", "l_c", "l_d")
_BG = "#262930"  # napari's dark theme background
_FG = "#d0d4dc"


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
            ax.set_facecolor(_BG)
            ax.tick_params(colors=_FG, labelsize=7)
            for sp in ax.spines.values():
                sp.set_color("#5a626c")
        self.ax.set_xlabel("iteration", color=_FG, fontsize=7)
        self.ax.set_ylabel("loss", color=_FG, fontsize=7)
        self.ax_alpha.set_ylabel("α", color="#ffcc66", fontsize=8)
        self.ax_alpha.set_ylim(0, 1)
        self.iterations: list[int] = []
        self.series: dict[str, list[float]] = {}
        self.alpha: list[float] = []
        self._lines: dict[str, object] = {}
        (self._alpha_line,) = self.ax_alpha.plot([], [], color="#ffcc66", lw=1.2, ls="--")
        self._dirty = False
        self.draw_count = 0
        self._timer = QTimer(self)
        self._timer.setInterval(int(redraw_ms))
        self._timer.timeout.connect(self.redraw)
        self._timer.start()

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
        self._dirty = True

    def add_point(self, iteration: int, losses: dict[str, float], alpha: float) -> None:
        """Record one iteration's losses and alpha (no drawing here)."""
        n = len(self.iterations)
        self.iterations.append(int(iteration))
        shown = {k: v for k, v in losses.items() if k in PLOT_KEYS} or losses
        for key, val in shown.items():
            ys = self.series.setdefault(key, [float("nan")] * n)
            ys.append(float(val))
        for key, ys in self.series.items():
            if len(ys) < n + 1:
                ys.append(float("nan"))
        self.alpha.append(float(alpha))
        self._dirty = True

    def redraw(self) -> None:
        """Redraw if new points arrived since the last draw."""
        if not self._dirty or not self.isVisible():
            return
        self._dirty = False
        x = self.iterations
        new_line = False
        for key, ys in self.series.items():
            line = self._lines.get(key)
            if line is None:
                (line,) = self.ax.plot(x, ys, lw=1.0, label=key)
                self._lines[key] = line
                new_line = True
            else:
                line.set_data(x, ys)
        self._alpha_line.set_data(x, self.alpha)
        if new_line:
            self.ax.legend(
                fontsize=6, loc="upper right", facecolor=_BG, labelcolor=_FG, framealpha=0.6
            )
        positive = [v for ys in self.series.values() for v in ys if v == v and v > 0]
        self.ax.set_yscale("log" if positive and max(positive) / min(positive) > 50 else "linear")
        self.ax.relim()
        self.ax.autoscale_view()
        if x:
            self.ax.set_xlim(min(x), max(max(x), min(x) + 1))
        self.canvas.draw_idle()
        self.draw_count += 1
