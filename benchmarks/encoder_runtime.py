"""``python -m benchmarks.encoder_runtime``: LiteMedSAM's frozen encoder on the CPU through
torch fp32, ONNX Runtime and OpenVINO (issue 22).

- Timing: r = one torch fp32 forward of a 256² image at batch 1, with the training child's
  intra-op threads (``core.device.cpu_policy``).  Each runtime runs the batch-1 export (a batch
  of 4 = four batch-1 calls, as the plugin does) and a fixed batch-4 export.  Each round times
  every variant once, in turn, so load from other processes hits them alike; reported: the
  median seconds per image over the rounds and the median of each round's ratio to that
  round's r.  ``os.getloadavg()`` is recorded before and after.
- Accuracy: the first ``--faz-per-domain`` FAZ test images of each site and the first
  ``--drishti`` Drishti-GS test images (disc and cup), through the plugin's prompt path
  (:class:`~napari_synfoc.core.prompting.PromptSegmenter`: trainer resize, fp16-rounded
  embedding, box from the ground truth), with the embedding from torch fp32 and from each
  runtime: box Dice per runtime and its difference to torch's, and the max |embedding diff|.

Writes ``encoder.json`` (atomically) and ``encoder.md`` into ``--out``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_synfoc.core.metrics import dice
from napari_synfoc.io.results import write_json_atomic

from .common import bench_parser, markdown_table
from .prompts import drishti_cases, faz_cases

RUNTIMES = ("onnxruntime", "openvino")


def _export(encoder, sha: str, folder: Path, batch: int):
    from napari_synfoc.core.foundation import encoder_export as ex

    shape = (batch, 3, 256, 256)
    key = ex.export_key(ex.weights_digest(encoder, sha), shape)
    t = time.perf_counter()
    exp = ex.load_or_export(encoder, folder, key, shape)
    print(f"[encoder] export batch {batch}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return exp


def _variants(encoder, sha: str, folder: Path, threads: int) -> dict[str, Any]:
    """name -> (callable on a 4-image batch, images per call) for every timed variant."""
    import torch

    from napari_synfoc.core.foundation.encoder_runtimes import open_session

    e1, e4 = _export(encoder, sha, folder, 1), _export(encoder, sha, folder, 4)

    def torch_fwd(x):
        with torch.no_grad():
            return encoder(torch.from_numpy(x)).numpy()

    out: dict[str, Any] = {
        "torch b1": (lambda x: torch_fwd(x[:1]), 1),
        "torch b4": (torch_fwd, 4),
    }
    for name in RUNTIMES:
        s1, s4 = (
            open_session(name, e1.onnx_path, threads),
            open_session(name, e4.onnx_path, threads),
        )
        out[f"{name} b1"] = (lambda x, s=s1: s(x[:1]), 1)
        out[f"{name} b4 (4 x b1)"] = (lambda x, s=s1: [s(x[i : i + 1]) for i in range(4)], 4)
        out[f"{name} b4 (b4 export)"] = (s4, 4)
    return out


def time_variants(encoder, sha: str, folder: Path, threads: int, rounds: int) -> dict[str, Any]:
    """Wall and process-CPU seconds per image and their ratios to r (medians over ``rounds``
    interleaved rounds; CPU time counts every thread of this process, so it is much less
    sensitive to other processes than the wall clock)."""
    variants = _variants(encoder, sha, folder, threads)
    x = np.random.default_rng(0).random((4, 3, 256, 256), dtype=np.float32)
    for fn, _ in variants.values():  # warm-up
        fn(x)
    secs: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(rounds):
        for name, (fn, n) in variants.items():
            t, c = time.perf_counter(), time.process_time()
            fn(x)
            secs[name].append((time.perf_counter() - t) / n)
            cpu[name].append((time.process_time() - c) / n)
        print(f"[encoder] round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s ({cpu[k][-1]:.2f} "
              "cpu-s)" for k, v in secs.items()), file=sys.stderr, flush=True)  # fmt: skip

    def ratios(v, ref):
        return statistics.median(s / r for s, r in zip(v, ref, strict=True))

    return {
        name: {
            "seconds_per_image": statistics.median(v),
            "ratio_to_r": ratios(v, secs["torch b1"]),
            "cpu_seconds_per_image": statistics.median(cpu[name]),
            "cpu_ratio_to_r": ratios(cpu[name], cpu["torch b1"]),
            "images_per_call": variants[name][1],
            "rounds_seconds": v,
            "rounds_cpu_seconds": cpu[name],
        }
        for name, v in secs.items()
    }


def _cases(faz_per_domain: int, drishti: int, data):
    """FAZ and Drishti-GS cases interleaved (site 1..5, Drishti, then the next image of each),
    so a run stopped early still covers every set."""
    from itertools import chain, zip_longest

    per_set: dict[str, list] = {}
    for g, n, img, gt in faz_cases(faz_per_domain, data):
        per_set.setdefault(g, []).append((g, n, img, {"": gt}, False))
    per_set["Drishti-GS"] = [
        ("Drishti-GS", n, img, {" disc": lab > 0, " cup": lab == 2}, True)
        for n, img, lab in drishti_cases(drishti, data)
    ]
    return [c for c in chain.from_iterable(zip_longest(*per_set.values())) if c is not None]


def summarise(rows: list[dict], max_diff: dict[str, float]) -> dict[str, Any]:
    """Mean box Dice per set and runtime, the runtime - torch deltas, the largest per image."""
    groups: dict[str, Any] = {}
    for g in sorted({r["group"] for r in rows}):
        rs = [r for r in rows if r["group"] == g]
        groups[g] = {"n": len(rs)} | {n: float(np.mean([r[n] for r in rs])) for n in
                                      ("torch", *RUNTIMES)}  # fmt: skip
        for n in RUNTIMES:
            groups[g][f"{n} - torch"] = groups[g][n] - groups[g]["torch"]
            groups[g][f"{n} max |image delta|"] = max(abs(r[n] - r["torch"]) for r in rs)
    return {"groups": groups, "max_abs_embedding_diff": max_diff, "per_image": rows}


def accuracy(seg, faz_per_domain: int, drishti: int, folder: Path, data, progress) -> dict:
    """Box Dice through the prompt path with each runtime's embedding; max |embedding diff|.
    ``progress(summary)`` after each image."""
    import torch

    from napari_synfoc.core.foundation import FrozenEncoder
    from napari_synfoc.core.prompting import as_chw, check_box, mask_to_box

    sha = seg.base_weights["sha256"]
    encs = {n: FrozenEncoder(n, cache_dir=folder, weights_sha256=sha) for n in RUNTIMES}
    rows, max_diff = [], dict.fromkeys(RUNTIMES, 0.0)
    for group, name, img, gts, rgb in _cases(faz_per_domain, drishti, data):
        chw = as_chw(img, rgb)
        x = seg.resized(chw)
        x3 = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        with torch.no_grad():
            embs = {"torch": seg.net.image_encoder(x3)}
            for n, enc in encs.items():
                embs[n] = enc(seg.net.image_encoder, x3)
                if enc.active != n:
                    raise RuntimeError(f"{n} did not run: {enc.status}")
                max_diff[n] = max(max_diff[n], float((embs[n] - embs["torch"]).abs().max()))
        hw = chw.shape[-2:]
        for part, gt in gts.items():
            if not gt.any():
                continue
            box = check_box(mask_to_box(gt), hw)
            row = {"group": group + part, "image": name}
            for n, e in embs.items():  # the plugin decodes the fp16-rounded embedding
                pred = seg._decode(e.half().float(), hw, box=box)
                row[n] = float(dice(pred, gt))
                if not rows and n == "torch":  # the same mask as the plugin's own call
                    same = np.array_equal(pred, seg.segment_with_box(img, box, rgb=rgb))
                    assert same, "the decode differs from PromptSegmenter.segment_with_box"
            rows.append(row)
        print(f"[encoder] {group} {name}: " + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in
              ("torch", *RUNTIMES)), file=sys.stderr, flush=True)  # fmt: skip
        progress(summarise(rows, max_diff))
    return summarise(rows, max_diff)


def markdown(res: dict[str, Any], acc: dict[str, Any] | None) -> str:
    """The report: machine, timing table (seconds and multiples of r), accuracy table."""
    t = res["timing"]
    lines = [
        "# LiteMedSAM encoder on the CPU: torch fp32, ONNX Runtime, OpenVINO",
        "",
        f"`{res['command']}`"
        + (
            f" then `{res['accuracy_command']}` (load average "
            f"{res['accuracy_loadavg']} at its end)"
            if "accuracy_command" in res
            else ""
        ),
        "",
        f"CPU: {res['cpu']} ({res['cores']} usable cores), {res['threads']} intra-op threads "
        f"(the training child's), 256×256 input. Load average before / after: "
        f"{res['loadavg_before']} / {res['loadavg_after']} (the machine was shared with other "
        "jobs: compare the ratios, each taken against torch in the same round).",
        f"Versions: {res['versions']}. r = one torch fp32 forward at batch 1: "
        f"{t['torch b1']['seconds_per_image']:.2f} s (median of {res['rounds']} rounds).",
        "",
        markdown_table(
            [
                "variant",
                "images per call",
                "wall s per image",
                "wall multiple of r",
                "CPU s per image",
                "CPU multiple of r_cpu",
            ],
            [
                [
                    k,
                    v["images_per_call"],
                    f"{v['seconds_per_image']:.3f}",
                    f"{v['ratio_to_r']:.2f}",
                    f"{v['cpu_seconds_per_image']:.3f}",
                    f"{v['cpu_ratio_to_r']:.2f}",
                ]
                for k, v in t.items()
            ],
        ),  # fmt: skip
        "",
        "Medians over the rounds; each ratio is taken against torch b1 of the same round. "
        "CPU seconds: this process's CPU time (all its threads) per image.",
        "",
        f'Plugin choice (`encoder_runtime="auto"` on this machine): **{res["auto"]["active"]}**'
        f" ({res['auto']['status']}).",
        "",
    ]
    if acc:
        head = ["set", "n", "torch", *[f"{n} (delta, max per image)" for n in RUNTIMES]]
        body = [
            [g, v["n"], f"{v['torch']:.4f}"]
            + [f"{v[n]:.4f} ({v[f'{n} - torch']:+.4f}, {v[f'{n} max |image delta|']:.4f})"
               for n in RUNTIMES]
            for g, v in acc["groups"].items()
        ]  # fmt: skip
        diffs = ", ".join(f"{n} {d:.1e}" for n, d in acc["max_abs_embedding_diff"].items())
        done = "" if acc["complete"] else " (stopped early: the images listed in accuracy.json)"
        lines += [
            f"`{acc['command']}`{done}, load average {acc['loadavg']} at its last image.",
            "",
            "Box Dice through the prompt path (box from the ground truth), embedding from each "
            f"runtime vs torch fp32. Max |embedding - torch| over all images: {diffs}.",
            "",
            markdown_table(head, body),
            "",
        ]
    return "\n".join(lines)


def _write_md(out: Path) -> None:
    res = json.loads((out / "encoder.json").read_text(encoding="utf-8"))
    acc_path = out / "accuracy.json"
    acc = json.loads(acc_path.read_text(encoding="utf-8")) if acc_path.is_file() else None
    text = markdown(res, acc)
    (out / "encoder.md").write_text(text, encoding="utf-8")
    print(text)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(
        "python -m benchmarks.encoder_runtime",
        "LiteMedSAM's encoder: torch fp32 vs ONNX Runtime vs OpenVINO (speed, box Dice)",
        quick_help="2 rounds, 1 FAZ image per site, 2 Drishti images",
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--faz-per-domain", type=int, default=10)
    p.add_argument("--drishti", type=int, default=51, help="Drishti-GS test images (51: all)")
    p.add_argument("--threads", type=int, default=0, help="0: the training child's policy")
    p.add_argument("--skip-timing", action="store_true", help="keep OUT/encoder.json")
    p.add_argument("--skip-accuracy", action="store_true", help="keep OUT/accuracy.json")
    p.add_argument("--report-only", action="store_true", help="rewrite encoder.md from the JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.faz_per_domain, args.drishti = 2, 1, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        _measure(
            args, out, "python -m benchmarks.encoder_runtime " + " ".join(argv or sys.argv[1:])
        )
    if (out / "encoder.json").is_file():
        _write_md(out)
    return 0


def _measure(args, out: Path, command: str) -> None:
    """Timing into ``encoder.json``, accuracy into ``accuracy.json`` (rewritten per image)."""
    import torch

    from napari_synfoc.core.device import cpu_policy, usable_cores
    from napari_synfoc.core.embeddings import default_cache_root
    from napari_synfoc.core.foundation import FrozenEncoder
    from napari_synfoc.core.foundation.encoder_runtimes import runtime_version
    from napari_synfoc.core.foundation.frozen_encoder import cpu_model
    from napari_synfoc.core.prompting import PromptSegmenter

    threads = args.threads or cpu_policy()[0]
    torch.set_num_threads(threads)
    folder = default_cache_root() / "encoder_runtime"  # the plugin's export folder
    seg = PromptSegmenter("litemedsam", precision="fp32", lru_size=1)
    enc, sha = seg.net.image_encoder, seg.base_weights["sha256"]
    if not args.skip_timing:
        res: dict[str, Any] = {
            "command": command,
            "cpu": cpu_model(),
            "cores": usable_cores(),
            "threads": threads,
            "rounds": args.rounds,
            "versions": {"torch": torch.__version__} | {n: runtime_version(n) for n in RUNTIMES},
            "loadavg_before": [round(v, 2) for v in os.getloadavg()],
        }
        res["timing"] = time_variants(enc, sha, folder, threads, args.rounds)
        auto = FrozenEncoder("auto", cache_dir=folder, weights_sha256=sha)
        auto(enc, torch.rand(1, 3, 256, 256))
        res["auto"] = {"active": auto.active, "status": auto.status}
        res["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        write_json_atomic(out / "encoder.json", res)
    if not args.skip_accuracy:
        head = {"command": command, "threads": threads, "complete": False}

        def progress(summary):
            loadavg = [round(v, 2) for v in os.getloadavg()]
            write_json_atomic(out / "accuracy.json", head | {"loadavg": loadavg} | summary)

        summary = accuracy(seg, args.faz_per_domain, args.drishti, folder, args.data, progress)
        head["complete"] = True
        progress(summary)


if __name__ == "__main__":
    raise SystemExit(main())
