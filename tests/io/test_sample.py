"""The generated "SynFoC demo: mixed-scanner stack" sample data."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_synfoc.io.sample import (
    IMAGE_NAME,
    LABELS_NAME,
    SCANNERS,
    demo_ground_truth,
    make_demo_stack,
    make_sample_data,
    slice_domains,
    sparse_labels,
)


@pytest.fixture(scope="module")
def stack():
    t0 = time.perf_counter()
    out = make_demo_stack()
    return (*out, time.perf_counter() - t0)


def test_shapes_types_domains_and_speed(stack):
    image, gt, domains, seconds = stack
    assert image.shape == gt.shape == (12, 128, 128)
    assert image.dtype == np.float32 and gt.dtype == np.uint8
    assert set(np.unique(gt)) == {0, 1}
    assert domains == ["scanner A"] * 4 + ["scanner B"] * 4 + ["scanner C"] * 4
    assert seconds < 1.0
    assert slice_domains(5) == [0, 0, 1, 1, 2]
    small, small_gt, small_dom = make_demo_stack(n_slices=5, size=48, seed=3)
    assert small.shape == small_gt.shape == (5, 48, 48) and len(small_dom) == 5
    # every slice has one object of a sensible size (5-25 % of the slice)
    frac = gt.reshape(12, -1).mean(axis=1)
    assert ((frac > 0.05) & (frac < 0.25)).all()


def test_deterministic_per_seed(stack):
    image, gt, domains, _ = stack
    image2, gt2, domains2 = make_demo_stack(seed=0)
    np.testing.assert_array_equal(image, image2)
    np.testing.assert_array_equal(gt, gt2)
    assert domains == domains2
    np.testing.assert_array_equal(demo_ground_truth(), gt)
    other, other_gt, _ = make_demo_stack(seed=1)
    assert not np.array_equal(other_gt, gt) and not np.allclose(other, image)
    # slice i depends only on (seed, i) and its scanner: the first slice is the same in a
    # shorter stack
    short, short_gt, _ = make_demo_stack(n_slices=6, seed=0)
    np.testing.assert_array_equal(short[0], image[0])
    np.testing.assert_array_equal(short_gt[:2], gt[:2])


def test_scanners_really_differ(stack):
    image, gt, domains, _ = stack
    by = {s.name: image[[d == s.name for d in domains]] for s in SCANNERS}
    means = {k: float(v.mean()) for k, v in by.items()}
    # B lifts everything (gamma 0.55, offset 0.25); C darkens the mid-tones (gamma 1.8)
    assert means["scanner B"] > means["scanner A"] + 0.15
    assert means["scanner C"] < means["scanner A"] - 0.03
    # noise: in the air outside the body the signal is flat, so the std of horizontal
    # neighbour differences / sqrt(2) estimates each scanner's noise sigma
    for sc in SCANNERS:
        corners = np.concatenate(
            [c for sl in by[sc.name] for c in (sl[:10, :10], sl[:10, -10:], sl[-10:, :10])]
        )
        sigma = np.diff(corners, axis=1).std() / np.sqrt(2)
        assert sigma == pytest.approx(sc.noise, rel=0.2), sc.name


def test_task_is_learnable_but_not_thresholding(stack):
    image, gt, domains, _ = stack
    for i in range(4):  # scanner A
        x, g = image[i], gt[i].astype(bool)
        # learnable: the object is clearly brighter than the rest of the body on average
        assert x[g].mean() > x[~g].mean() + 0.2
        # not trivial: the brightest 1 % are mostly distractors, and no global threshold
        # reaches a Dice of 0.85
        top = x > np.quantile(x, 0.99)
        assert (top & g).sum() < 0.5 * top.sum()
        best = max(
            2 * ((x > t) & g).sum() / ((x > t).sum() + g.sum())
            for t in np.quantile(x, np.linspace(0.02, 0.98, 97))
        )
        assert 0.5 < best < 0.85


def test_sample_layers_label_only_two_slices(stack):
    image, gt, domains, _ = stack
    layers = make_sample_data()
    [(img, img_meta, img_kind), (lab, lab_meta, lab_kind)] = layers
    assert (img_kind, lab_kind) == ("image", "labels")
    assert img_meta["name"] == IMAGE_NAME and lab_meta["name"] == LABELS_NAME
    np.testing.assert_array_equal(img, image)
    assert img_meta["metadata"]["synfoc_domains"] == domains
    assert img_meta["metadata"]["synfoc_labelled_slices"] == [0, 1]
    labelled = [z for z in range(lab.shape[0]) if lab[z].any()]
    assert labelled == [0, 1]
    np.testing.assert_array_equal(lab[:2], gt[:2])
    assert not lab[2:].any()
    np.testing.assert_array_equal(sparse_labels(gt, (3,))[3], gt[3])


@pytest.mark.gui
def test_open_sample_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-synfoc", "synfoc_demo")
    assert [lyr.name for lyr in viewer.layers] == [IMAGE_NAME, LABELS_NAME]
    assert viewer.layers[LABELS_NAME].__class__.__name__ == "Labels"
    assert viewer.layers[IMAGE_NAME].data.shape == (12, 128, 128)
