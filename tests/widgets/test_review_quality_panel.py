"""The review panel's quality estimate and "Accept all estimated >= q" on a 200-slice stack
(issue 21), with fake predictions: the table shows each slice's estimated Dice, and one click
accepts exactly the unlabelled slices estimated at or above q, as one undoable step."""

import numpy as np

from napari_synfoc.core.review import review_maps

Z, H, W = 200, 32, 32


def _fake_predictions():
    """Both models predict a square on every slice; they agree fully on even slices and only
    half on odd ones (the U-Net's square is half as wide)."""
    fm = np.zeros((Z, 2, H, W), np.float32)
    fm[:, 0] = 1.0
    fm[:, 0, 8:24, 8:24], fm[:, 1, 8:24, 8:24] = 0.0, 1.0
    un = fm.copy()
    un[1::2, 0, 8:24, 16:24], un[1::2, 1, 8:24, 16:24] = 1.0, 0.0
    return fm, un


def test_quality_column_and_accept_above_q_on_200_slices(make_napari_viewer):
    from napari_synfoc.widgets.dock import SynFoCWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    image = viewer.add_image(rng.random((Z, H, W)).astype(np.float32), name="stack")
    labels = np.zeros((Z, H, W), np.uint8)
    labels[[0, 100], 8:24, 8:24] = 1  # two labelled slices, where the ensemble is right
    lab = viewer.add_labels(labels, name="annotations")
    w = SynFoCWidget(viewer, backend="thread")
    viewer.window.add_dock_widget(w)
    w.image_combo.set_value(image)
    w.labels_combo.set_value(lab)
    fm, un = _fake_predictions()
    w.controller.review.set_maps(review_maps(fm, un), image)
    assert w.wait(60)  # the overlay layers are built
    w.refresh_ranking()
    w.update_buttons()

    # the table: 200 rows, each with an estimated Dice; agreeing (even) slices estimate higher
    table = w.review.table
    assert table.rowCount() == Z
    assert table.horizontalHeaderItem(2).text() == "Est. Dice"
    est = {int(table.item(r, 0).text()): float(table.item(r, 2).text()) for r in range(Z)}
    assert len(est) == Z
    predicted = w.controller.review.estimate.predicted
    assert all(abs(est[z] - predicted[z]) < 0.006 for z in range(Z))  # shown to 2 decimals
    # scores: 1 on even slices; on odd ones the soft Dice of a 16x16 square against its 16x8
    # half, 2*128/(256+128) = 2/3.  Calibration: the two labelled slices (score 1, Dice 1, not
    # trained on: weight 2) against the prior's 4 pseudo-points; below the knot at 1 the fit
    # follows the prior's slope, so odd slices stay at 2/3 and even ones at 1
    np.testing.assert_allclose(predicted[1::2], 2 / 3, atol=1e-5)
    np.testing.assert_allclose(predicted[0::2], 1.0, atol=1e-5)

    # accept all slices estimated >= 0.9: the 98 unlabelled even slices, one undo step
    assert w.review.accept_above_btn.isEnabled()
    before = np.array(lab.data, copy=True)
    w.review.accept_q.setValue(0.9)
    w.review.accept_above_btn.click()
    evens = [z for z in range(0, Z, 2) if z not in (0, 100)]
    ens = w.controller.review.maps.ensemble_label
    for z in evens:
        np.testing.assert_array_equal(lab.data[z], ens[z])
    odd_changed = [z for z in range(1, Z, 2) if (lab.data[z] != before[z]).any()]
    assert odd_changed == []
    assert "98 slice(s)" in w.last_message
    assert set(w.labeled_slices(lab)) == {*evens, 0, 100}
    lab.undo()  # ONE undo restores every slice
    np.testing.assert_array_equal(lab.data, before)

    # q = 0.5 takes the odd slices too (estimated 2/3); a second click finds nothing left
    w.review.accept_q.setValue(0.5)
    w.review.accept_above_btn.click()
    assert "198 slice(s)" in w.last_message
    assert len(w.labeled_slices(lab)) == Z
    after = np.array(lab.data, copy=True)
    w.review.accept_above_btn.click()
    assert "nothing accepted" in w.last_message
    np.testing.assert_array_equal(lab.data, after)
    w.cleanup()
