"""Patient geometry: world = LPS mm, reorientation, overlay of two orientations, exact writes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_synfoc.io.geometry import (
    Geometry,
    file_array_and_geometry,
    geometry_from_layer,
    layer_kwargs,
    patient_axes,
)
from napari_synfoc.io.readers import read_layer_data
from napari_synfoc.io.view import keep_views_upright, upright_orientation2d
from napari_synfoc.io.writers import napari_write_image, napari_write_labels

# SimpleITK (x, y, z) direction matrices (columns = index axes)
T1_DIAG = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # the issue's T1 MRI
SAGITTAL = (0, 0, -1, 1, 0, 0, 0, -1, 0)  # slices along x, rows along -z: permutation + flips


def _oblique(base):
    """``base`` rotated by 12 degrees about z: a non-diagonal direction near ``base``."""
    a = np.radians(12.0)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return tuple((r @ np.asarray(base, float).reshape(3, 3)).ravel())


def _volume(direction, shape=(7, 9, 11), seed=0):
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.9, 1.1, 2.5))
    img.SetOrigin((12.5, -40.0, 33.0))
    img.SetDirection(direction)
    return img, arr


def _layer(tmp_path, img, name="scan.mha"):
    import napari

    sitk.WriteImage(img, str(tmp_path / name))
    [(data, kwargs, kind)] = read_layer_data(tmp_path / name)
    return napari.layers.Image(data, **kwargs), (data, kwargs, kind)


@pytest.mark.parametrize("direction", [T1_DIAG, SAGITTAL, _oblique(T1_DIAG), _oblique(SAGITTAL)])
def test_world_coordinate_is_lps_position(tmp_path, direction):
    img, arr = _volume(direction)
    layer, _ = _layer(tmp_path, img)
    rng = np.random.default_rng(1)
    for _ in range(20):
        idx_xyz = tuple(int(rng.integers(0, n)) for n in img.GetSize())
        lps = np.asarray(img.TransformIndexToPhysicalPoint(idx_xyz))
        data_idx = np.asarray(layer.world_to_data(lps[::-1]))
        np.testing.assert_allclose(data_idx, np.round(data_idx), atol=1e-6)  # on a voxel
        np.testing.assert_allclose(layer.data_to_world(np.round(data_idx)), lps[::-1], atol=1e-6)
        assert layer.data[tuple(np.round(data_idx).astype(int))] == arr[idx_xyz[::-1]]


def test_issue_voxel_lands_at_its_lps_position(tmp_path):
    # the issue: voxel (100,150,60) of a diag(-1,-1,1) T1 showed at (28,284,158), LPS (28,-16,38)
    img = sitk.Image(200, 300, 120, sitk.sitkInt16)
    img.SetDirection(T1_DIAG)
    img.SetOrigin((128.0, 134.0, -22.0))
    lps = np.asarray(img.TransformIndexToPhysicalPoint((100, 150, 60)))
    np.testing.assert_allclose(lps, (28.0, -16.0, 38.0))
    layer, _ = _layer(tmp_path, img)
    idx = np.round(layer.world_to_data(lps[::-1])).astype(int)
    np.testing.assert_allclose(layer.data_to_world(idx), lps[::-1], atol=1e-9)
    # and the layer grid runs along (S, P, L): no flips left in the affine
    np.testing.assert_allclose(layer.affine.affine_matrix[:3, :3], np.eye(3), atol=1e-12)


def test_two_orientations_of_one_scan_overlay(tmp_path):
    """The same scan saved in another orientation: every voxel at the same world point."""
    img, _ = _volume(_oblique(T1_DIAG))
    other = sitk.DICOMOrient(img, "RAI")  # permuted/flipped copy, same physical space
    assert other.GetDirection() != img.GetDirection()
    a, _ = _layer(tmp_path, img, "a.nii.gz")
    b, _ = _layer(tmp_path, other, "b.nrrd")
    rng = np.random.default_rng(2)
    for _ in range(30):
        idx = tuple(int(rng.integers(0, n)) for n in a.data.shape)
        world = a.data_to_world(idx)
        idx_b = np.round(b.world_to_data(world)).astype(int)
        np.testing.assert_allclose(b.data_to_world(idx_b), world, atol=1e-4)
        assert a.data[idx] == b.data[tuple(idx_b)]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("direction", [_oblique(T1_DIAG), _oblique(SAGITTAL)])
def test_writers_round_trip_file_geometry_exactly(tmp_path, suffix, direction):
    img, arr = _volume(direction)
    src = tmp_path / f"src{suffix}"
    sitk.WriteImage(img, str(src))
    ref = sitk.ReadImage(str(src))  # the geometry as the format stores it
    [(data, kwargs, _)] = read_layer_data(src)
    meta = {**kwargs, "rgb": False}
    [out] = napari_write_image(str(tmp_path / f"out{suffix}"), data, meta)
    back = sitk.ReadImage(out)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), arr)  # file voxel order
    tol = 1e-6 if suffix.startswith(".nii") else 1e-12  # NIfTI stores float32
    np.testing.assert_allclose(back.GetSpacing(), ref.GetSpacing(), atol=tol)
    np.testing.assert_allclose(back.GetOrigin(), ref.GetOrigin(), atol=tol * 100)
    np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=tol)
    # labels on the layer grid land on the file grid too
    seg = (data > 0).astype(np.uint8)
    [out] = napari_write_labels(str(tmp_path / f"out_seg{suffix}"), seg, kwargs)
    back = sitk.ReadImage(out)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), (arr > 0).astype(np.uint8))
    np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=tol)


def test_geometry_from_layer_and_layer_kwargs(tmp_path):
    import napari

    img, _ = _volume(_oblique(SAGITTAL))
    layer, (data, kwargs, _) = _layer(tmp_path, img)
    g = geometry_from_layer(layer)
    # napari's own data -> world mapping, probed on the unit vectors
    o = np.asarray(layer.data_to_world((0, 0, 0)))
    m = np.eye(4)
    m[:3, 3] = o
    for j in range(3):
        m[:3, j] = np.asarray(layer.data_to_world(np.eye(3)[j])) - o
    assert g.allclose(Geometry.from_affine(m), atol=1e-9)
    # a layer built from layer_kwargs(g) has the same world grid
    twin = napari.layers.Labels(np.zeros(data.shape, np.uint8), **layer_kwargs(g))
    for idx in [(0, 0, 0), (3, 4, 5), (6, 8, 10)][: min(3, data.shape[0])]:
        idx = tuple(min(i, n - 1) for i, n in zip(idx, data.shape, strict=True))
        np.testing.assert_allclose(twin.data_to_world(idx), layer.data_to_world(idx), atol=1e-9)
    # back to the file: the inverse of the reader's reorientation
    arr2, g2 = file_array_and_geometry(data, g, layer.metadata)
    assert g2.allclose(Geometry.from_sitk(img), atol=1e-9)
    np.testing.assert_array_equal(arr2, sitk.GetArrayFromImage(img))
    # user transforms on top (scale, translate) are part of the geometry
    moved = napari.layers.Image(data, scale=(1, 2, 3), translate=(5, 6, 7))
    gm = geometry_from_layer(moved)
    assert gm.spacing == (1.0, 2.0, 3.0) and gm.origin == (5.0, 6.0, 7.0)
    sheared = napari.layers.Image(data, shear=[0.5, 0, 0])
    with pytest.raises(ValueError, match="sheared"):
        geometry_from_layer(sheared)


def test_patient_axes():
    d_napari = np.asarray(SAGITTAL, float).reshape(3, 3)[::-1, ::-1]
    axes, flip = patient_axes(d_napari)
    assert sorted(axes) == [0, 1, 2]
    assert all(abs(d_napari[i, axes[i]]) == 1 for i in range(3))
    assert flip == tuple(d_napari[i, axes[i]] < 0 for i in range(3))
    assert patient_axes(np.eye(3)) == ((0, 1, 2), (False, False, False))


def test_views_upright():
    from napari.components import ViewerModel

    assert upright_orientation2d(3, (1, 2)) == ("down", "right")  # axial: anterior on top
    assert upright_orientation2d(3, (0, 2)) == ("up", "right")  # coronal: head on top
    assert upright_orientation2d(3, (0, 1)) == ("up", "right")  # sagittal
    assert upright_orientation2d(2, (0, 1)) == ("down", "right")  # plain 2D image
    viewer = ViewerModel()
    viewer.add_image(np.zeros((4, 5, 6)))
    keep_views_upright(viewer)
    keep_views_upright(viewer)  # idempotent
    assert tuple(viewer.camera.orientation2d) == ("down", "right")
    viewer.dims.order = (1, 0, 2)  # coronal
    assert tuple(viewer.camera.orientation2d) == ("up", "right")
    viewer.dims.order = (2, 0, 1)  # sagittal
    assert tuple(viewer.camera.orientation2d) == ("up", "right")
    viewer.dims.order = (0, 1, 2)
    assert tuple(viewer.camera.orientation2d) == ("down", "right")
