"""The prompt panel: label with a box or clicks, fix disagreement regions, propagate boxes.

It only shows state and emits :attr:`PromptPanel.action` with an action name; the prompt tool
(:mod:`..prompt_tool`) does the work.  The shortcuts act while a prompt layer ("SynFoC prompts"
or "SynFoC points") is the active layer.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...config import PROPOSALS_FILL_BETWEEN, PROPOSALS_WITHIN_LABELLED_EXTENT
from ..tooltips import shortcut_tip

# action -> shortcut (bound on the prompt layers; napari's own keys of those layers are
# overridden there: S is not "select mode", A not "select all")
PROMPT_SHORTCUTS = {
    "box_mode": "B",
    "positive": "P",
    "negative": "N",
    "segment": "S",
    "clear": "C",
    "accept_slice": "A",
    "accept_all": "Shift-A",
    "undo": "Control-Z",
}
EXTRA_KEYS = {"segment": ("Enter",)}

MODE_TIPS = {
    "replace": (
        "replace: on this slice the class becomes the mask; its pixels outside the mask are "
        "cleared. Other classes and other slices are never changed."
    ),
    "add": (
        "add: background pixels inside the mask get the class; nothing is removed (points can "
        "only take back what the last mask added). Other classes and slices are never changed."
    ),
}

FIX_SOURCES = {
    "MedSAM": "medsam",
    "U-Net": "unet",
    "ensemble": "ensemble",
    "re-prompt (ensemble seed)": "reprompt",
}

TIPS = {
    "box_mode": "Draw a box around the structure on this slice (rectangle in 'SynFoC prompts').",
    "positive": "Place positive points (inside the structure) in 'SynFoC points'.",
    "negative": "Place negative points (outside the structure) in 'SynFoC points'.",
    "segment": (
        "Segment the current slice with LiteMedSAM from its box and/or points; the mask goes "
        "into the Labels layer as one undoable step (also Enter)."
    ),
    "clear": "Remove the box and points of the current slice and forget the last mask.",
    "auto": "Segment as soon as a box is drawn or a point placed.",
    "cls": "The class the prompted mask is written as.",
    "fix": (
        "Click inside a Divergence (M_d) region: the chosen model's prediction is accepted in "
        "that connected region only (one undoable step). With 're-prompt', the click re-prompts "
        "LiteMedSAM seeded with the ensemble's mask: click = positive, Shift-click = negative."
    ),
    "propagate": (
        "Boxes on two or more slices are interpolated on the slices between and each slice is "
        "segmented in the background; results go to the 'SynFoC proposals' layer."
    ),
    "from_models": (
        "After training: on every predicted slice nobody labelled, LiteMedSAM gets a box around "
        "each part the models found (of this class) and its mask replaces the part where the two "
        "agree; results go to 'SynFoC proposals' (accept or fix them)."
    ),
    "within_extent": (
        "Propose only where the structure can be: not beyond a labelled slice without the "
        "class that lies past the slices where you labelled it (a structure spanning one run "
        "of slices, as an aorta or a vertebra). Untick for structures that come and go."
    ),
    "fill_between": (
        "On a slice between two labelled slices that both hold the class, propose the "
        "interpolation of their masks (as 'Fill between slices' does); the models' masks on the "
        "other slices. On the CT it left fewer corrections than the models' masks. The review "
        "ranking then also prefers slices far from labelled ones. Untick for a stack of "
        "separate images."
    ),
    "stop_propagation": "Stop the propagation; slices already done stay as proposals.",
    "accept_slice": "Write the proposal of the current slice into the labels (one undo step).",
    "accept_all": "Write every proposal into the labels (one undo step); they count as labelled.",
    "accept_all_train": "Accept every proposal, then train (Retrain when a model exists).",
    "undo": "Undo the last edit of the Labels layer (napari's labels undo).",
}


def _tip(key: str) -> str:
    return shortcut_tip(key, TIPS, PROMPT_SHORTCUTS, EXTRA_KEYS)


class PromptPanel(QCollapsible):
    """Prompt tools: box, points, segment, fix disagreement, box propagation with proposals."""

    action = Signal(str)  # one of the keys of TIPS (except "auto", "cls", "fix")
    fix_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Prompt: label with a box or clicks (LiteMedSAM)", parent)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        self.cls_spin = QSpinBox()
        self.cls_spin.setObjectName("prompt_class")
        self.cls_spin.setRange(1, 255)
        self.cls_spin.setToolTip(_tip("cls"))
        self.mode_combo = QComboBox()
        self.mode_combo.setObjectName("prompt_mode")
        for i, (mode, text) in enumerate(MODE_TIPS.items()):
            self.mode_combo.addItem(mode)
            self.mode_combo.setItemData(i, text, Qt.ItemDataRole.ToolTipRole)
        self.mode_combo.setToolTip("\n".join(MODE_TIPS.values()))
        row = QHBoxLayout()
        row.addWidget(self.cls_spin)
        row.addWidget(self.mode_combo)
        self.auto_check = QCheckBox("auto")
        self.auto_check.setChecked(True)
        self.auto_check.setToolTip(_tip("auto"))
        row.addWidget(self.auto_check)
        form.addRow("Class / mode", row)
        lay.addLayout(form)
        self.buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()
        for i, (key, text) in enumerate(
            (
                ("box_mode", "Box"),
                ("positive", "+ point"),
                ("negative", "− point"),
                ("segment", "Segment"),
                ("clear", "Clear"),
                ("undo", "Undo"),
            )
        ):
            grid.addWidget(self._button(key, text), i // 3, i % 3)
        lay.addLayout(grid)

        lay.addWidget(QLabel("Fix where the models disagree"))
        fix_row = QHBoxLayout()
        self.fix_source = QComboBox()
        self.fix_source.setObjectName("fix_source")
        self.fix_source.addItems(list(FIX_SOURCES))
        self.fix_source.setCurrentText("ensemble")
        self.fix_source.setToolTip(_tip("fix"))
        self.fix_btn = QPushButton("Click to fix")
        self.fix_btn.setObjectName("fix_mode")
        self.fix_btn.setCheckable(True)
        self.fix_btn.setToolTip(_tip("fix"))
        self.fix_btn.toggled.connect(self.fix_toggled.emit)
        fix_row.addWidget(self.fix_source)
        fix_row.addWidget(self.fix_btn)
        lay.addLayout(fix_row)

        lay.addWidget(QLabel("Box propagation through the volume"))
        prop = QGridLayout()
        prop.addWidget(self._button("propagate", "Propagate boxes"), 0, 0)
        prop.addWidget(self._button("stop_propagation", "Stop"), 0, 1)
        prop.addWidget(self._button("from_models", "Propose from the models"), 1, 0)
        self.extent_check = QCheckBox("within labelled extent")
        self.extent_check.setObjectName("prompt_within_extent")
        self.extent_check.setChecked(PROPOSALS_WITHIN_LABELLED_EXTENT)
        self.extent_check.setToolTip(_tip("within_extent"))
        prop.addWidget(self.extent_check, 1, 1)
        self.fill_check = QCheckBox("fill between labelled slices")
        self.fill_check.setObjectName("prompt_fill_between")
        self.fill_check.setChecked(PROPOSALS_FILL_BETWEEN)
        self.fill_check.setToolTip(_tip("fill_between"))
        prop.addWidget(self.fill_check, 2, 1)
        self.progress = QProgressBar()
        self.progress.setObjectName("propagation_progress")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        prop.addWidget(self.progress, 3, 0, 1, 2)
        prop.addWidget(self._button("accept_slice", "Accept slice"), 4, 0)
        prop.addWidget(self._button("accept_all", "Accept all"), 4, 1)
        prop.addWidget(self._button("accept_all_train", "Accept all and train"), 5, 0, 1, 2)
        lay.addLayout(prop)
        self.addWidget(body)
        self.set_state(propagating=False, n_proposals=0, can_train=True)

    def _button(self, key: str, text: str) -> QPushButton:
        short = PROMPT_SHORTCUTS.get(key)
        btn = QPushButton(f"{text} ({short})" if short and len(short) == 1 else text)
        btn.setObjectName(f"prompt_{key}")
        btn.setToolTip(_tip(key))
        btn.clicked.connect(lambda _=False, k=key: self.action.emit(k))
        self.buttons[key] = btn
        return btn

    # ------------------------------------------------------------------ values
    @property
    def cls(self) -> int:
        return int(self.cls_spin.value())

    @property
    def mode(self) -> str:
        return self.mode_combo.currentText()

    @property
    def within_extent(self) -> bool:
        """Proposals from the models only within each class's labelled extent."""
        return self.extent_check.isChecked()

    @property
    def fill_between(self) -> bool:
        """Proposals from the models interpolate between labelled slices that hold the class."""
        return self.fill_check.isChecked()

    @property
    def auto(self) -> bool:
        return self.auto_check.isChecked()

    @property
    def fix_choice(self) -> str:
        """The fix source: medsam, unet, ensemble or reprompt."""
        return FIX_SOURCES[self.fix_source.currentText()]

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, int(total)))
        self.progress.setValue(int(done))

    def set_state(self, propagating: bool, n_proposals: int, can_train: bool) -> None:
        """Enable the propagation buttons for the run state."""
        b = self.buttons
        b["propagate"].setEnabled(not propagating)
        b["from_models"].setEnabled(not propagating)
        b["stop_propagation"].setEnabled(propagating)
        for key in ("accept_slice", "accept_all"):
            b[key].setEnabled(not propagating and n_proposals > 0)
        b["accept_all_train"].setEnabled(not propagating and n_proposals > 0 and can_train)
        b["accept_all"].setText(f"Accept all ({n_proposals})" if n_proposals else "Accept all")
