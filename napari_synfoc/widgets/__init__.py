"""napari dock widgets (thin Qt layers over napari_synfoc.core)."""
