"""Make docs/images/geometry.png: an obliquely stored head phantom opened upright in patient mm.

Run headless (Xvfb)::

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python -m benchmarks.make_geometry_png

The phantom (head, nose anterior, neck inferior, a bright marker on the patient's left) is
sampled on a grid whose direction matrix is a sagittal acquisition rotated by 12 degrees
(non-diagonal), saved as NIfTI, opened through the plugin's reader and shown in the sagittal
view: head on top, nose on the left, status bar in patient millimetres.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]


def phantom(shape_zyx=(64, 80, 72), spacing_xyz=(3.0, 3.0, 3.0)):
    a = np.radians(12.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    sag = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)  # x,y,z columns: index axes
    d = rot @ sag
    img = sitk.Image(shape_zyx[::-1], sitk.sitkInt16)
    img.SetSpacing(spacing_xyz)
    img.SetDirection(tuple(d.ravel()))
    size = np.asarray(img.GetSize(), float)
    centre = d @ (np.asarray(spacing_xyz) * (size - 1) / 2)
    img.SetOrigin(tuple(-centre))
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    idx = np.stack([i, j, k], -1).reshape(-1, 3).astype(float)
    lps = idx * spacing_xyz @ d.T + np.asarray(img.GetOrigin())
    x, y, z = lps.T  # L, P, S in mm
    head = (x / 70) ** 2 + (y / 85) ** 2 + ((z - 10) / 95) ** 2 < 1
    brain = (x / 60) ** 2 + (y / 75) ** 2 + ((z - 20) / 80) ** 2 < 1
    nose = ((x / 35) ** 2 + ((y + 85) / 18) ** 2 + ((z + 5) / 25) ** 2) < 1
    neck = (x**2 + (y - 10) ** 2 < 40**2) & (z < -40) & (z > -100)
    marker = (x - 40) ** 2 + (y + 20) ** 2 + (z - 50) ** 2 < 12**2  # patient's left
    v = np.zeros(len(x), np.int16)
    v[head | nose | neck] = 300
    v[brain] = 600
    v[marker] = 1200
    img = sitk.GetImageFromArray(v.reshape(shape_zyx))
    img.SetSpacing(spacing_xyz)
    img.SetDirection(tuple(d.ravel()))
    img.SetOrigin(tuple(-centre))
    return img


def main() -> int:
    import napari

    out = ROOT / "docs" / "images" / "geometry.png"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "oblique_head.nii.gz"
        sitk.WriteImage(phantom(), str(path))
        viewer = napari.Viewer(show=False)
        viewer.window.resize(1100, 800)
        [layer] = viewer.open(str(path), plugin="napari-synfoc")
        layer.colormap = "gray"
        viewer.dims.order = (2, 0, 1)  # sagittal: S vertical, P horizontal
        mid = np.asarray(layer.data_to_world(np.asarray(layer.data.shape) / 2))
        viewer.dims.point = tuple(mid)
        viewer.reset_view()
        viewer.text_overlay.visible = True
        viewer.text_overlay.text = "oblique NIfTI, sagittal view: head up, face left"
        print("camera orientation2d:", viewer.camera.orientation2d, "dims", viewer.dims.order)
        viewer.screenshot(str(out), canvas_only=False)
        viewer.close()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
