"""Discovery of on-disk data sets and the labelled / unlabelled split (spec §7.1, §7.2).

Layouts (``detect_layout`` picks one; ``discover`` lists the samples):

- ``generic``: ``ROOT/<domain>/{train,test}/{images|imgs|image}/`` with masks in
  ``{masks|mask}/`` paired by file stem.  Binary by default (any non-zero mask value is
  foreground); ``label_map`` maps stored values to class indices for multi-class masks.  The
  FAZ benchmark (``faz_octa_5sites/data/FAZ``) is this layout.
- ``prostate``: ``ProstateSlice/<site>/{train,test}/{image,mask}/``; 0 = prostate, 255 = bg.
- ``fundus``: ``Fundus/DomainK/{train,test}/ROIs/{image,mask}/``; RGB images; 0 = cup,
  128 = rim, 255 = background -> classes 1 cup, 2 rim (disc = cup ∪ rim), ``phi_classes``
  "fundus".
- ``mnms``: ``mnms/vendorX/{train,test}/{image,mask}/``; RGB one-hot masks, R LV (1),
  G MYO (2), B RV (3).
- ``busi``: ``Dataset_BUSI_with_GT/{benign,malignant}/NAME.png`` + ``NAME_mask*.png`` merged
  with max; grey; lexicographic order, the last int(20 %) of each class is test; ``normal`` is
  dropped.
- ``drishti``: ``Drishti-GS/{images,masks}/`` + ``split_official.tsv`` (official 50/51 split);
  palette masks 0 bg, 1 rim, 2 cup -> 1 cup, 2 rim, ``phi_classes`` "fundus".

Unpaired files are skipped, listed in ``DataSplit.problems`` and reported with one warning.
Mask values are checked when a sample is loaded
(:func:`napari_synfoc.core.data.load_sample_arrays`), so discovery of thousands of files stays
fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .data import DataError, Sample, warn_problems

__all__ = ["LAYOUTS", "DataError", "DataSplit", "detect_layout", "discover", "make_ssl_split"]

LAYOUTS = ("generic", "prostate", "fundus", "mnms", "busi", "drishti")
IMAGE_DIRS = ("images", "imgs", "image")
MASK_DIRS = ("masks", "mask")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
PROSTATE_SITES = ("BIDMC", "BMC", "HK", "I2CVB", "RUNMC", "UCL")
BUSI_CLASSES = ("benign", "malignant")
SPLITS = ("train", "test")


@dataclass
class DataSplit:
    """Train and test samples per domain, plus what the model needs to know about the task."""

    train: dict[str, list[Sample]]
    test: dict[str, list[Sample]]
    num_classes: int
    in_channels: int
    phi_classes: str
    layout: str
    root: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def domains(self) -> list[str]:
        return sorted(set(self.train) | set(self.test))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    )


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _first_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    return None


def _match(root: Path) -> str | None:
    """The layout ``root`` itself is in, or None."""
    if not root.is_dir():
        return None
    if (root / "split_official.tsv").is_file() and (root / "images").is_dir():
        return "drishti"
    subs = _subdirs(root)
    names = {p.name for p in subs}
    if set(BUSI_CLASSES) <= names and any(
        "_mask" in f.name for f in (root / BUSI_CLASSES[0]).iterdir()
    ):
        return "busi"
    with_splits = [d for d in subs if any((d / s).is_dir() for s in SPLITS)]
    if not with_splits:
        return None
    if any((d / s / "ROIs" / "image").is_dir() for d in with_splits for s in SPLITS):
        return "fundus"
    if not any(
        _first_dir(d / s, IMAGE_DIRS) for d in with_splits for s in SPLITS if (d / s).is_dir()
    ):
        return None
    doms = {d.name for d in with_splits}
    rname = root.name.lower()
    if rname in ("prostateslice", "prostate") or doms <= set(PROSTATE_SITES):
        return "prostate"
    if rname in ("mnms", "m&ms") or all(n.lower().startswith("vendor") for n in doms):
        return "mnms"
    return "generic"


def _resolve(root: Path) -> tuple[Path, str]:
    """Find the layout at ``root`` or down a chain of single sub-folders (e.g. data/FAZ)."""
    cur = Path(root)
    if not cur.exists():
        raise DataError(f"data folder {root} does not exist")
    if not cur.is_dir():
        raise DataError(f"{root} is not a folder")
    for _ in range(4):
        found = _match(cur)
        if found:
            return cur, found
        subs = _subdirs(cur)
        if len(subs) != 1:
            break
        cur = subs[0]
    raise DataError(
        f"no known data layout under {root}. Expected e.g. DIR/<domain>/{{train,test}}/"
        f"{{{'|'.join(IMAGE_DIRS)}}}/ with {{{'|'.join(MASK_DIRS)}}}/ beside it (generic), "
        "ProstateSlice/<site>/..., Fundus/DomainK/{train,test}/ROIs/{image,mask}, "
        "mnms/vendorX/..., Dataset_BUSI_with_GT/{benign,malignant}, or a Drishti-GS folder "
        "with split_official.tsv"
    )


def detect_layout(root: str | Path) -> str:
    """The name of the layout at ``root`` (one of :data:`LAYOUTS`); :class:`DataError` if none."""
    return _resolve(Path(root))[1]


def _pair(img_dir: Path, mask_dir: Path, domain: str, problems: list[str], **kw) -> list[Sample]:
    images = {p.stem: p for p in _images_in(img_dir)}
    masks = {p.stem: p for p in _images_in(mask_dir)}
    for stem in sorted(set(images) - set(masks)):
        problems.append(f"image without mask: {images[stem]}")
    for stem in sorted(set(masks) - set(images)):
        problems.append(f"mask without image: {masks[stem]}")
    return [
        Sample(name=stem, domain=domain, image_path=images[stem], mask_path=masks[stem], **kw)
        for stem in sorted(set(images) & set(masks))
    ]


def _paired_layout(
    root: Path,
    image_sub: tuple[str, ...],
    mask_sub: tuple[str, ...],
    problems: list[str],
    roi: bool = False,
    **kw,
):
    train: dict[str, list[Sample]] = {}
    test: dict[str, list[Sample]] = {}
    domains = [d for d in _subdirs(root) if any((d / s).is_dir() for s in SPLITS)]
    if not domains:
        raise DataError(f"no domain folders with train/ or test/ inside {root}")
    for d in domains:
        if not (d / "train").is_dir():
            raise DataError(f"domain {d.name}: missing folder {d / 'train'}")
        for split, out in (("train", train), ("test", test)):
            base = d / split / "ROIs" if roi else d / split
            if not base.is_dir():
                if split == "test":
                    out[d.name] = []
                    continue
                raise DataError(f"domain {d.name}: missing folder {base}")
            img_dir = _first_dir(base, image_sub)
            mask_dir = _first_dir(base, mask_sub)
            if img_dir is None:
                raise DataError(
                    f"missing image folder in {base}: expected one of {', '.join(image_sub)}"
                )
            if mask_dir is None:
                raise DataError(
                    f"missing mask folder in {base}: expected one of {', '.join(mask_sub)}"
                )
            out[d.name] = _pair(img_dir, mask_dir, d.name, problems, **kw)
    return train, test


def _first_image_channels(train: dict[str, list[Sample]]) -> int:
    """3 if the first image is colour with differing channels, else 1."""
    import numpy as np
    from PIL import Image

    for samples in train.values():
        for s in samples:
            with Image.open(s.image_path) as im:
                if im.mode not in ("RGB", "RGBA", "P"):
                    return 1
                a = np.asarray(im.convert("RGB"))
            same = np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])
            return 1 if same else 3
    return 1


def _generic(root: Path, label_map, problems):
    if label_map is not None:
        lm = {int(k): int(v) for k, v in dict(label_map).items()}
        if not lm or min(lm.values()) < 0:
            raise DataError(f"label_map must map mask values to classes >= 0, got {label_map}")
        kw = {"encoding": "map", "label_map": lm}
        num_classes = max(max(lm.values()) + 1, 2)
    else:
        kw = {"encoding": "binary"}
        num_classes = 2
    train, test = _paired_layout(root, IMAGE_DIRS, MASK_DIRS, problems, **kw)
    channels = _first_image_channels(train)
    for d in (train, test):
        for samples in d.values():
            for s in samples:
                s.channels = channels
    return train, test, num_classes, channels, "plain"


def _busi(root: Path, problems):
    train: dict[str, list[Sample]] = {}
    test: dict[str, list[Sample]] = {}
    mask_re = re.compile(r"^(?P<stem>.*)_mask(_\d+)?$")
    for cls in BUSI_CLASSES:
        folder = root / cls
        if not folder.is_dir():
            raise DataError(f"BUSI: missing folder {folder}")
        files = _images_in(folder)
        images = sorted((p for p in files if not mask_re.match(p.stem)), key=lambda p: p.name)
        masks: dict[str, list[Path]] = {}
        for p in files:
            m = mask_re.match(p.stem)
            if m:
                masks.setdefault(m.group("stem"), []).append(p)
        samples = []
        for p in images:
            ms = sorted(masks.pop(p.stem, []), key=lambda q: q.name)
            if not ms:
                problems.append(f"image without mask: {p}")
                continue
            samples.append(
                Sample(
                    name=p.stem,
                    domain=cls,
                    image_path=p,
                    mask_path=ms[0],
                    extra_mask_paths=tuple(ms[1:]),
                    encoding="busi",
                    channels=1,
                )
            )
        for _stem, ms in sorted(masks.items()):
            problems.extend(f"mask without image: {q}" for q in ms)
        n_test = int(len(samples) * 0.2)
        train[cls] = samples[: len(samples) - n_test]
        test[cls] = samples[len(samples) - n_test :]
    return train, test


def _drishti(root: Path, problems):
    tsv = root / "split_official.tsv"
    img_dir, mask_dir = root / "images", root / "masks"
    for p in (img_dir, mask_dir):
        if not p.is_dir():
            raise DataError(f"Drishti-GS: missing folder {p}")
    rows = [ln.split("\t") for ln in tsv.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not rows or rows[0][:2] != ["file", "split"]:
        raise DataError(f"{tsv}: expected a header 'file<TAB>split'")
    split_of = {}
    for r in rows[1:]:
        if len(r) < 2 or r[1] not in SPLITS:
            raise DataError(f"{tsv}: bad row {r!r} (split must be train or test)")
        split_of[r[0]] = r[1]
    domain = root.name
    train = {domain: []}
    test = {domain: []}
    images = {p.name: p for p in _images_in(img_dir)}
    masks = {p.name: p for p in _images_in(mask_dir)}
    for name in sorted(set(images) | set(masks) | set(split_of)):
        if name not in images or name not in masks:
            if name in images:
                problems.append(f"image without mask: {images[name]}")
            elif name in masks:
                problems.append(f"mask without image: {masks[name]}")
            else:
                problems.append(f"listed in {tsv.name} but missing: {name}")
            continue
        if name not in split_of:
            problems.append(f"not in {tsv.name}: {images[name]}")
            continue
        s = Sample(
            name=Path(name).stem,
            domain=domain,
            image_path=images[name],
            mask_path=masks[name],
            encoding="drishti",
            channels=3,
        )
        (train if split_of[name] == "train" else test)[domain].append(s)
    return train, test


def discover(
    root: str | Path, layout: str = "auto", label_map: dict[int, int] | None = None
) -> DataSplit:
    """Find the train/test samples of every domain under ``root``.

    ``layout``: "auto" (see :func:`detect_layout`) or one of :data:`LAYOUTS`.  ``label_map``
    (generic layout only) maps stored mask values to class indices.  Samples are sorted by
    file name within each domain.  Unpaired files are skipped and listed in ``problems``.
    """
    root = Path(root)
    if layout == "auto":
        root, layout = _resolve(root)
    elif layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; choose from {('auto',) + LAYOUTS}")
    elif not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if label_map is not None and layout != "generic":
        raise DataError(f"label_map applies to the generic layout only, not {layout!r}")
    problems: list[str] = []
    phi = "plain"
    if layout == "generic":
        train, test, k, ch, phi = _generic(root, label_map, problems)
    elif layout == "prostate":
        train, test = _paired_layout(
            root, ("image",), ("mask",), problems, encoding="prostate", channels=1
        )
        k, ch = 2, 1
    elif layout == "fundus":
        train, test = _paired_layout(
            root, ("image",), ("mask",), problems, roi=True, encoding="fundus", channels=3
        )
        k, ch, phi = 3, 3, "fundus"
    elif layout == "mnms":
        train, test = _paired_layout(
            root, ("image",), ("mask",), problems, encoding="mnms", channels=1
        )
        k, ch = 4, 1
    elif layout == "busi":
        train, test = _busi(root, problems)
        k, ch = 2, 1
    else:
        train, test = _drishti(root, problems)
        k, ch, phi = 3, 3, "fundus"
    warn_problems(problems, f"{layout} data at {root}")
    return DataSplit(
        train=train,
        test=test,
        num_classes=k,
        in_channels=ch,
        phi_classes=phi,
        layout=layout,
        root=root,
        problems=problems,
    )


def make_ssl_split(
    split: DataSplit, labeled_domain: str, n_labeled: int
) -> tuple[list[Sample], list[Sample]]:
    """Spec §7.2: the first ``n_labeled`` of the labelled domain's name-sorted train list are
    labelled; the rest of that domain and every train image of the other domains are
    unlabelled (their masks stay attached, for logging only)."""
    if labeled_domain not in split.train:
        raise DataError(
            f"unknown domain {labeled_domain!r}; known domains: "
            f"{', '.join(sorted(split.train)) or '(none)'}"
        )
    pool = sorted(split.train[labeled_domain], key=lambda s: s.name)
    if n_labeled < 1:
        raise DataError(f"no labelled images: n_labeled is {n_labeled}; it must be at least 1")
    if not pool:
        raise DataError(
            f"no labelled images: domain {labeled_domain!r} has no paired train images"
        )
    if n_labeled > len(pool):
        raise DataError(
            f"domain {labeled_domain!r} has only {len(pool)} train images, "
            f"{n_labeled} requested as labelled"
        )
    labeled = pool[:n_labeled]
    unlabeled = pool[n_labeled:]
    for d in sorted(split.train):
        if d != labeled_domain:
            unlabeled.extend(sorted(split.train[d], key=lambda s: s.name))
    return labeled, unlabeled
