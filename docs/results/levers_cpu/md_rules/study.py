"""Snapshot both models' probabilities on S40 every 25 iterations (dock config, 700 its)."""
import sys, time, numpy as np
from napari_synfoc.bench.interactive import build_stack, dock_config
from napari_synfoc.core.events import Predictions, Step
from napari_synfoc.core.interactive import StackTask, train_on_stack
img, lab, labeled = build_stack("S40")
cfg = dock_config("auto", int(sys.argv[1]) if len(sys.argv) > 1 else 700)
z = img.shape[0]
fm_full = un_full = None
have = np.zeros(z, bool)
t0 = time.perf_counter()
task = StackTask(image=img, labels=lab, labeled_slices=list(labeled))
for ev in train_on_stack(task, cfg, should_stop=lambda: False, view_slice=z // 2,
                         embed_cache_dir="/tmp/md/emb"):
    if isinstance(ev, Predictions):
        if fm_full is None:
            shape = (z, ev.fm_prob.shape[1], *ev.fm_prob.shape[2:])
            fm_full = np.zeros(shape, np.float32); un_full = np.zeros(shape, np.float32)
        have[ev.scatter_into(fm_full, un_full)] = True
        t = time.perf_counter() - t0
        print(f"{t:.1f}s it {ev.iteration} have {have.sum()}", flush=True)
        if have.all() and ev.iteration % 25 == 0:
            np.savez_compressed(f"/tmp/md/snap_{ev.iteration:04d}.npz", fm=fm_full.astype(np.float16),
                                un=un_full.astype(np.float16), t=t)
np.savez_compressed("/tmp/md/gt.npz", lab=lab, labeled=np.array(labeled))
print("done")
