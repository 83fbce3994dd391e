"""The dock's panels: small Qt views that show state and emit signals; the dock wires them.

- :mod:`.data`: image, labels, labelled slices, extra unlabelled data.
- :mod:`.model`: foundation model, device, profile, iterations, and the Advanced form
  (:mod:`.advanced`, generated from the config's field metadata).
- :mod:`.run`: train / retrain / stop, progress, status, messages, loss plot.
- :mod:`.review`: slices ranked by disagreement, jump and accept.
- :mod:`.session`: save / load a session, predict, export.
"""
