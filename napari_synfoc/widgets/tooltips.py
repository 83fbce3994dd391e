"""Every tooltip of the SynFoC widget, in one table (keys are widget object names)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SHORTCUTS = {
    "next_uncertain": "Shift-N",
    "mark_labeled": "Shift-M",
    "accept_medsam": "Shift-S",
    "accept_unet": "Shift-U",
    "accept_ensemble": "Shift-E",
}

TOOLTIPS: dict[str, str] = {
    # data
    "image": "The image to segment: a 2D grey or RGB image, or a (Z, Y, X) stack/volume.",
    "labels": (
        "Your annotations. Every slice with painted voxels counts as labelled; the rest are "
        "used as unlabelled data. Labels are copied when training starts, so you can keep "
        "painting while it runs (the next Retrain uses the new strokes)."
    ),
    "labeled_list": "Slices that count as labelled. Click one to go there.",
    "mark_labeled": (
        "Declare the current slice labelled although it is all background (nothing to paint "
        "there). Click again to unmark."
    ),
    "extra_layers": (
        "Other image layers (e.g. scans from other scanners) used as extra unlabelled data. "
        "Select several with Ctrl/Shift-click."
    ),
    "extra_folder": (
        "A folder of images or volumes (PNG, TIFF, NIfTI, MHA, NRRD) used as extra unlabelled "
        "data; files named like label maps (*_mask, *_seg, ...) are skipped."
    ),
    # model
    "foundation": (
        "The foundation model student. LiteMedSAM ships with the plugin; MedSAM ViT-B and SAM "
        "ViT-B need a local checkpoint file (nothing is downloaded)."
    ),
    "checkpoint": "Checkpoint file for MedSAM ViT-B (medsam_vit_b.pth) or SAM ViT-B.",
    "device": "Where to train: auto picks CUDA, then Apple MPS, then the CPU.",
    "profile": (
        "Compute profile. auto: 'gpu-fast' on a CUDA GPU, 'cpu-interactive' otherwise "
        "(frozen LiteMedSAM encoder with cached embeddings, narrow U-Net). 'faithful' is the "
        "paper's setting (a GPU job); 'tiny' is a random test model."
    ),
    "iterations": "Training iterations for a run started with Train.",
    "retrain_iterations": (
        "Training iterations for a Retrain: a warm restart from the latest models, so fewer "
        "than a first run (100 on a CPU: the effort benchmark's loop)."
    ),
    "predict_every": (
        "Refresh the prediction overlays every N iterations (0: about five times per run). "
        "Each refresh predicts every slice, which costs time."
    ),
    # actions
    "train": "Start training from scratch on the selected image and labels, in the background.",
    "retrain": (
        "Train again starting from the latest models (warm start), with your current labels "
        "and accepted corrections."
    ),
    "stop": "Stop training after the current iteration; the last checkpoint is kept.",
    "next_uncertain": (
        "Go to the unlabelled slice where MedSAM and the U-Net disagree most (then the next "
        "one on each press)."
    ),
    "accept_medsam": (
        "Copy the MedSAM prediction of the current slice into your labels (undo: Ctrl-Z on the "
        "Labels layer)."
    ),
    "accept_unet": (
        "Copy the U-Net prediction of the current slice into your labels (undo: Ctrl-Z on the "
        "Labels layer)."
    ),
    "accept_ensemble": (
        "Copy the ensemble (mean of both models) prediction of the current slice into your "
        "labels (undo: Ctrl-Z on the Labels layer)."
    ),
    "keep_existing": (
        "When accepting, keep voxels you painted yourself and fill only the unpainted ones."
    ),
    "review_table": (
        "Slices to label next, unlabelled first. Priority: how much the two models disagree "
        "on the slice, times how unlike it looks from every labelled slice (a labelled "
        "slice's look-alike neighbours teach little). Est. Dice: how good the ensemble's "
        "prediction of the slice is likely to be, from how much the two models agree, checked "
        "against the slices you labelled or accepted. Click to go there."
    ),
    # issue 21: the quality estimate and accept-above-q
    "accept_above": (
        "Copy the ensemble prediction into every unlabelled slice whose estimated Dice (the "
        "table's Est. Dice) is at least q, in one step (undo: Ctrl-Z on the Labels layer). "
        "Check the accepted slices before you rely on them."
    ),
    "accept_quality": (
        "q: the estimated Dice a slice needs to be accepted by 'Accept all estimated ≥ q'."
    ),
    "save_session": "Save both models, the config and the labelled-slice list to one file.",
    "load_session": "Load a saved session: Retrain continues from it and Predict uses it.",
    "predict": "Predict the selected image with the current (or loaded) model.",
    "export_labels": "Write the labels layer to NIfTI/MHA/NRRD with the image's geometry.",
    "export_predictions": (
        "Write the prediction, consensus, divergence and disagreement maps to a folder "
        "(NIfTI) with the image's geometry."
    ),
    # advanced (config fields)
    "use_smc": "Self-mutual confidence: weight the U-Net vs MedSAM teachers per batch (alpha).",
    "use_cdcr": "Consensus-divergence consistency: entropy on agreed pixels, MSE on the rest.",
    "suponly": "Baseline: supervised loss only (no unlabelled data, no co-training).",
    "alpha_mode": "How alpha is computed (smc: the paper's self-mutual confidence).",
    "alpha_constant": "Alpha used when SMC is off or alpha mode is 'constant'.",
    "tau": "Confidence threshold for pseudo-labels (ensemble max-probability must exceed it).",
    "ema_decay": "EMA decay of the teacher models.",
    "consistency": "Maximum weight lambda of the unsupervised losses.",
    "ramp_steps": "Lambda ramps up in this many steps over the run.",
    "lora_rank": "LoRA rank of the foundation model's adapters.",
    "lora_targets": "Attention projections that get LoRA adapters (paper: q and v).",
    "freeze_encoder": "Freeze the foundation image encoder (no LoRA); faster, less adaptive.",
    "cache_embeddings": "Compute each slice's encoder embedding once (needs a frozen encoder).",
    "batch_labeled": "Labelled images per batch.",
    "batch_unlabeled": "Unlabelled images per batch (must equal the labelled batch).",
    "unet_lr": "U-Net learning rate (SGD).",
    "fm_lr": "Foundation model learning rate (AdamW).",
    "fm_size": "Foundation model input size in pixels.",
    "unet_size": "U-Net input size in pixels.",
    "precision": "Numeric precision (auto: bf16/fp16 where supported, else fp32).",
    "lr_schedule": "Learning-rate schedule (none: the paper's constant rates).",
    "teacher_bn": "Teacher batch-norm mode (train: as the official code).",
    "dice_bg_masked": "Mask the background Dice term by the confidence mask (a fix).",
    "ce_norm": "Normalise the pseudo-label cross-entropy over all or only confident pixels.",
    "model_selection": "Which model a run ends with (final, or best on held-out labelled slices).",
    "seed": "Random seed.",
    "checkpoint_every": "Save a checkpoint every N iterations (0: only at the end).",
}


def shortcut_tip(
    key: str,
    tips: Mapping[str, str],
    shortcuts: Mapping[str, str],
    extra_keys: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """``tips[key]`` ("" without one) followed by its keys as `` [K1 / K2]``: its shortcut in
    ``shortcuts``, then its ``extra_keys``; the bare text when it has no key."""
    keys = [shortcuts[key]] if key in shortcuts else []
    keys += list((extra_keys or {}).get(key, ()))
    text = tips.get(key, "")
    return f"{text} [{' / '.join(keys)}]" if keys else text


def tip(key: str) -> str:
    """The tooltip of ``key`` with its shortcut appended when it has one."""
    return shortcut_tip(key, TOOLTIPS, SHORTCUTS)
