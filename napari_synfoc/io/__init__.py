"""Qt-free readers, writers and sample data (SimpleITK, PIL).

Public API::

    read_volume(path) -> (array, Geometry)          # (z, y, x) order; 2D images (Y, X[, 3])
    write_volume(path, array, geometry, labels=False, rgb=False) -> path   # atomic
    check_labels_match(image_shape, labels_shape)   # raises SynFoCIOError
    make_demo_stack(n_slices=12, size=128, seed=0) -> (image, ground_truth, scanner_names)
"""

from napari_synfoc.io.geometry import Geometry, SynFoCIOError
from napari_synfoc.io.readers import (
    check_labels_match,
    is_label_name,
    read_dicom_series,
    read_layer_data,
    read_volume,
)
from napari_synfoc.io.sample import demo_ground_truth, make_demo_stack, sparse_labels
from napari_synfoc.io.writers import write_volume

__all__ = [
    "Geometry",
    "SynFoCIOError",
    "check_labels_match",
    "demo_ground_truth",
    "is_label_name",
    "make_demo_stack",
    "read_dicom_series",
    "read_layer_data",
    "read_volume",
    "sparse_labels",
    "write_volume",
]
