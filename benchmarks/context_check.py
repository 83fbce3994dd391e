"""Context between slices (issue 21 §3): does a 2.5D U-Net input help on the real CT?

A proxy check before building 2.5D into the engine: the cpu-interactive U-Net (16..256 at
128 px, area downsampling, CE + Dice, SGD as the engine's U-Net) trained supervised on the same
``k`` evenly spaced labelled slices as the effort loop's first labels, once with the slice alone
(2D) and once with its neighbours ``z-1, z, z+1`` as input channels (2.5D, edges repeated).
Scored on every unlabelled slice of the CT against the reference: mean per-class Dice, the
slices reaching the stop rule's 0.90, and the brush strokes the effort robot would need to
finish them from the prediction (:func:`benchmarks.effort_rules.correction_plan`).  If 2.5D
does not win here, where the U-Net alone decides, it is not worth the engine's complexity.

    python -m benchmarks.context_check --out docs/results/context_cpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = (16, 32, 64, 128, 256)  # the cpu-interactive U-Net
SIZE = 128


def context_input(img: np.ndarray, z: int, k: int) -> np.ndarray:
    """Slice ``z`` of a (Z, Y, X) volume with ``k`` neighbours each side as channels
    ((2k + 1, Y, X); beyond the ends the edge slice repeats); ``k = 0``: (1, Y, X)."""
    n = len(img)
    return np.stack([img[min(max(z + d, 0), n - 1)] for d in range(-k, k + 1)])


def train_unet(img, ref, labeled, k: int, iterations: int, seed: int, num_classes: int):
    """The U-Net trained supervised on ``labeled`` slices with ``k`` context slices a side;
    returns its label map of every slice at the image's size."""
    import torch
    import torch.nn.functional as F

    from napari_synfoc.core.losses import supervised_loss
    from napari_synfoc.core.unet import UNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = UNet(2 * k + 1, num_classes, FEATURES)
    opt = torch.optim.SGD(net.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)
    z_all, h, w = img.shape

    def batch(zs):
        x = torch.from_numpy(np.stack([context_input(img, z, k) for z in zs]))
        return F.interpolate(x, size=(SIZE, SIZE), mode="area")

    net.train()
    for _ in range(iterations):
        zs = [int(z) for z in rng.choice(labeled, 4)]
        x = batch(zs)
        y = torch.from_numpy(ref[zs].astype(np.int64))[:, None].float()
        y = F.interpolate(y, size=(SIZE, SIZE), mode="nearest")[:, 0].long()
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        out = net(x)
        loss, _ = supervised_loss(out[0] if isinstance(out, tuple) else out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    pred = np.zeros(img.shape, np.uint8)
    with torch.no_grad():
        for s in range(0, z_all, 16):
            zs = list(range(s, min(s + 16, z_all)))
            out = net(batch(zs))
            out = out[0] if isinstance(out, tuple) else out
            up = F.interpolate(out.float(), size=(h, w), mode="bilinear", align_corners=False)
            pred[zs] = up.argmax(1).numpy()
    return pred


def score(pred: np.ndarray, ref: np.ndarray, labeled, num_classes: int) -> dict[str, Any]:
    """Per-class mean Dice and slices at 0.90 on the unlabelled slices holding the class in
    the reference or the prediction, and the robot's brush strokes to finish them."""
    from .effort_rules import correction_plan

    unl = [z for z in range(len(ref)) if z not in set(labeled)]
    out: dict[str, Any] = {"strokes": 0}
    for c in range(1, num_classes):
        d = []
        for z in unl:
            p, r = pred[z] == c, ref[z] == c
            if p.any() or r.any():
                d.append(2.0 * (p & r).sum() / (p.sum() + r.sum()))
        out[f"dice_{c}"] = round(float(np.mean(d)), 4) if d else None
        out[f"ok_{c}"] = int(sum(x >= 0.9 for x in d))
        out[f"n_{c}"] = len(d)
    classes = list(range(1, num_classes))
    out["strokes"] = int(sum(len(correction_plan(pred[z], ref[z], classes)[1]) for z in unl))
    return out


def markdown(data: dict[str, Any]) -> str:
    rows = [
        "# Context between slices: the U-Net with and without its neighbours (issue 21 §3)",
        "",
        f"Command: `{data['command']}`  ",
        f"Volume: {data['volume']}; {data['iterations']} supervised iterations; "
        f"seeds {data['seeds']}.",
        "",
        "| labelled slices | input | seed | aorta Dice | aorta slices ≥ 0.90 | T12 Dice "
        "| T12 slices ≥ 0.90 | brush strokes to finish | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["runs"]:
        rows.append(
            f"| {r['labelled']} | {r['input']} | {r['seed']} | {r['dice_1']} | "
            f"{r['ok_1']}/{r['n_1']} | {r['dice_2']} | {r['ok_2']}/{r['n_2']} | "
            f"{r['strokes']} | {r['seconds']} |"
        )
    rows += [
        "",
        "Means over seeds:",
        "",
        "| labelled | input | aorta Dice | strokes |",
        "|---|---|---|---|",
    ]
    for key, m in data["means"].items():
        rows.append(
            f"| {key.split('/')[0]} | {key.split('/')[1]} | {m['dice_1']} | {m['strokes']} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--labelled", default="5,15", help="numbers of evenly spaced labelled slices")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--iterations", type=int, default=300)
    args = p.parse_args(argv)
    import torch

    from napari_synfoc.core.intensity import normalise_volume

    from .effort import init_slices, named_volume

    torch.set_num_threads(2)
    vol = named_volume("CT")
    img = normalise_volume(vol.image, False, vol.window).astype(np.float32)
    ref = vol.ref
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for n_lab in [int(k) for k in args.labelled.split(",")]:
        labeled = init_slices(len(img), n_lab)
        for seed in seeds:
            for k, name in ((0, "2D"), (1, "2.5D (z±1)")):
                t0 = time.perf_counter()
                pred = train_unet(img, ref, labeled, k, args.iterations, seed, vol.num_classes)
                row = {"labelled": n_lab, "input": name, "seed": seed}
                row.update(score(pred, ref, labeled, vol.num_classes))
                row["seconds"] = round(time.perf_counter() - t0, 1)
                runs.append(row)
                print(json.dumps(row), flush=True)
    means = {}
    for r in runs:
        means.setdefault(f"{r['labelled']}/{r['input']}", []).append(r)
    means = {
        k: {
            "dice_1": round(float(np.mean([r["dice_1"] for r in v])), 4),
            "strokes": round(float(np.mean([r["strokes"] for r in v])), 1),
        }
        for k, v in means.items()
    }
    command = "python -m benchmarks.context_check " + " ".join(argv or sys.argv[1:])
    data = {
        "command": command, "volume": "CT (aorta 1, T12 2)", "iterations": args.iterations,
        "seeds": seeds, "runs": runs, "means": means,
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    from napari_synfoc.io.results import write_json_atomic

    write_json_atomic(args.out / "context_check.json", data)
    (args.out / "context_check.md").write_text(markdown(data), encoding="utf-8")
    print(markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
