import glob, numpy as np, sys
sys.path.insert(0, "/work/main")
from napari_synfoc.bench.interactive import build_stack
_, lab, labeled = build_stack("S40")
unl = np.array([i for i in range(lab.shape[0]) if i not in labeled])
gt = lab[unl] > 0
for f in sorted(glob.glob("/tmp/md/snap_*.npz")):
    d = np.load(f); fm = d["fm"][unl].astype(np.float32)[:, 1]; un = d["un"][unl].astype(np.float32)[:, 1]
    ens = 0.5 * (fm + un); pred = ens > 0.5; err = pred != gt
    heat = np.abs(fm - un); margin = np.abs(2 * ens - 1)
    inter = (pred & gt).sum(); dice = 2 * inter / (pred.sum() + gt.sum())
    out = [f"{f[-8:-4]} dice {dice:.3f} err {err.mean()*100:.2f}%"]
    def pr(flag):
        n = flag.sum(); h = (flag & err).sum()
        return f"{h / n if n else float('nan'):.2f}/{h / err.sum():.2f}"
    for m in (0.4, 0.2, 0.1):
        out.append(f"marg<{m} {pr(margin < m)}")
    for t in (0.3, 0.5, 0.7):
        out.append(f"heat>{t} {pr(heat > t)}")
    out.append(f"argmax {pr((fm > 0.5) != (un > 0.5))}")
    # precision at top-k of heat (k = error count)
    k = int(err.sum()); idx = np.argsort(heat.ravel())[::-1][:k]
    out.append(f"topk-heat P {err.ravel()[idx].mean():.2f}")
    # error where ensemble picks fg but only one model says fg with low conf
    print(" | ".join(out))
