"""The layers the dock's last job used, and what to say when they were deleted while it ran."""

from __future__ import annotations

from typing import Any


class JobLayers:
    """The image and labels layers of the dock's last job (training or prediction)."""

    def __init__(self) -> None:
        self.image: Any = None
        self.labels: Any = None

    def remember(self, image: Any, labels: Any) -> None:
        """Record the layers a job that just started reads (``None`` for one it does not)."""
        self.image, self.labels = image, labels

    def gone(self, layers: Any) -> str:
        """A message naming the job's layers no longer in ``layers`` ("" when all are there)."""
        out = []
        if self.image is not None and self.image not in layers:
            out.append(
                f"Image layer '{self.image.name}' was deleted while the job ran: its overlays are "
                "not shown. The model is kept: Save session, or Predict another image with it."
            )
        if self.labels is not None and self.labels not in layers:
            out.append(
                f"Labels layer '{self.labels.name}' was deleted while training ran: the run used "
                "a copy taken at its start, and the model is kept (Save session)."
            )
        return " ".join(out)
