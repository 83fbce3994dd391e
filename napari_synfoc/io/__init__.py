"""Qt-free readers, writers and sample data (SimpleITK, PIL).

Public API::

    read_volume(path) -> (array, Geometry)          # (z, y, x) order; 2D images (Y, X[, 3])
    write_volume(path, array, geometry, labels=False, rgb=False) -> path   # atomic
    check_labels_match(image_shape, labels_shape)   # raises SynFoCIOError
    make_demo_stack(n_slices=12, size=128, seed=0) -> (image, ground_truth, scanner_names)
    geometry_from_layer(layer) -> Geometry          # patient geometry of a napari layer's grid
    layer_kwargs(geometry) -> dict                  # scale/translate/affine/metadata for a layer
    file_array_and_geometry(data, geometry, metadata) -> (array, Geometry)  # file voxel order
    list_dicom_series(folder) -> (series, left_out_file_names)   # series[i].label for pickers
    read_layer_data(path) -> [(data, kwargs, kind)]   # a DICOM folder: every readable series;
                                    # float label maps -> Labels (io/label_values.py)
"""

from napari_synfoc.io.geometry import (
    Geometry,
    SynFoCIOError,
    file_array_and_geometry,
    geometry_from_layer,
    layer_kwargs,
)
from napari_synfoc.io.readers import (
    check_labels_match,
    is_label_name,
    list_dicom_series,
    prefer_synfoc_reader,
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
    "file_array_and_geometry",
    "geometry_from_layer",
    "layer_kwargs",
    "list_dicom_series",
    "prefer_synfoc_reader",
    "is_label_name",
    "make_demo_stack",
    "read_dicom_series",
    "read_layer_data",
    "read_volume",
    "sparse_labels",
    "write_volume",
]
