"""Encoder variants for LiteMedSAM on CPU: time per uncached box prompt and FAZ box Dice."""
import statistics, sys, time, json
import numpy as np, torch
from napari_synfoc.bench.prompts import faz_cases
from napari_synfoc.core.prompting import PromptSegmenter, mask_to_box
torch.set_num_threads(2)
cases = list(faz_cases(int(sys.argv[1]) if len(sys.argv) > 1 else 4))
out = {}
for variant in sys.argv[2].split(","):
    prec = "bf16" if variant == "bf16" else "fp32"
    seg = PromptSegmenter("litemedsam", precision=prec, lru_size=1)
    if variant.startswith("int8"):
        seg.net.image_encoder = torch.ao.quantization.quantize_dynamic(
            seg.net.image_encoder, {torch.nn.Linear}, dtype=torch.qint8)
    seg.segment_with_box(cases[0][2], mask_to_box(cases[0][3]))  # warm-up
    ts, dice = [], []
    for _, name, img, gt in cases:
        t = time.perf_counter(); m = seg.segment_with_box(img, mask_to_box(gt)); ts.append(time.perf_counter() - t)
        dice.append(2 * (m & gt).sum() / (m.sum() + gt.sum()))
    out[variant] = {"median_s": statistics.median(ts), "dice": float(np.mean(dice)), "n": len(cases)}
    print(variant, out[variant], flush=True)
json.dump(out, open("/tmp/qz/out.json", "w"), indent=1)
