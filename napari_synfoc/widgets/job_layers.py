"""The layers the dock's last job used, and what to say when they were deleted while it ran."""

from __future__ import annotations

from typing import Any


class JobLayers:
    """The image and labels layers of the dock's last job (training or prediction)."""

    def __init__(self) -> None:
        self.image: Any = None
        self.labels: Any = None
        self.told: set[str] = set()  # "image" / "labels": their deletion was said while it ran

    def remember(self, image: Any, labels: Any) -> None:
        """Record the layers a job that just started reads (``None`` for one it does not)."""
        self.image, self.labels = image, labels
        self.told = set()

    def gone(self, layers: Any, untold: bool = False) -> str:
        """A message naming the job's layers no longer in ``layers`` ("" when all are there);
        ``untold``: only those whose deletion was not said while the job ran."""
        told = self.told if untold else set()
        out = []
        if self.image is not None and self.image not in layers and "image" not in told:
            out.append(
                f"Image layer '{self.image.name}' was deleted while the job ran: its overlays are "
                "not shown. The model is kept: Save session, or Predict another image with it."
            )
        if self.labels is not None and self.labels not in layers and "labels" not in told:
            out.append(
                f"Labels layer '{self.labels.name}' was deleted while training ran: the run used "
                "a copy taken at its start, and the model is kept (Save session)."
            )
        return " ".join(out)
