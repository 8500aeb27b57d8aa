"""Linear probes of frozen Sat2Sound embeddings (paper Tables 15–16).

A labelled dataset is embedded once with the frozen model — images through the image encoder
**without metadata** (every metadata token unknown, so a withmeta checkpoint sees the pixels only),
audio through the audio encoder on the first 10 s — and a linear classifier is fitted on the
embeddings. The accuracy is reported on the dataset's own split (``train/`` and ``test/`` folders)
or, when the layout has none, over stratified k folds (every sample is tested once), with the
confusion matrix summed over the test parts, next to the paper's row of ``probing_tables.csv``.

Classifier: scikit-learn ``LogisticRegression`` (multinomial, L-BFGS) on L2-normalised embeddings,
standardised per dimension on the training part. The paper's protocol does not require the MAE
BatchNorm + linear head trained by SGD; a convex fit has one optimum, so the result is deterministic
and reproducible on a CPU in seconds, with no learning-rate schedule or epoch count to tune.

Foreign images (EuroSAT 64², UC-Merced / RESISC-45 256², any size): the whole image is taken as one
scale-1 chip. Its centre square (the shorter side) is resized, PIL bicubic, to the checkpoint's
scale-1 crop (``TILE_SIZE[sat_type]``: 300 px for bingmap, 256 px otherwise) and then goes through
:func:`~sat2sound_core.preprocess.image.image_to_tensor` at scale 1, which crops that centre and
resizes it to 224² like the official transform. Cropping a fixed pixel count out of a 64² EuroSAT
patch is impossible, and the datasets' ground resolutions differ from the training imagery anyway,
so a probe of a foreign dataset must treat each image as a full footprint.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from sat2sound_core.common.errors import InputError
from sat2sound_core.common.files import write_bytes, write_text
from sat2sound_core.common.progress import ProgressCallback, report

if TYPE_CHECKING:
    from sat2sound_core.model.sat2sound import Sat2Sound

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
PROBING_CSV = "probing_tables.csv"
MAX_NAMED = 10


@dataclass(frozen=True)
class ProbeDataset:
    """Labelled samples: file paths, their class names, and the dataset's own split when it has one."""

    modality: str  # "image" or "audio"
    paths: tuple[Path, ...]
    labels: tuple[str, ...]
    is_test: tuple[bool, ...] | None = None  # None: no split in the layout, k-fold instead

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.labels)))


@dataclass(frozen=True)
class ProbeResult:
    """Accuracy and confusion matrix (rows: true class, columns: predicted) of one probe."""

    modality: str
    classes: tuple[str, ...]
    accuracy: float
    protocol: str  # "split" or "k-fold (k=…)"
    fold_accuracies: tuple[float, ...]
    confusion: np.ndarray = field(compare=False)
    samples: int = 0

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["confusion"] = self.confusion.tolist()
        return d


@dataclass(frozen=True)
class PaperProbeRow:
    """A Sat2Sound row of the paper's Tables 15–16."""

    table: str
    modality: str
    benchmark: str
    backbone: str
    accuracy_percent: float


# ---------------------------------------------------------------- datasets

def _class_folders(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[sub.name] = files
    return out


def image_folder(root: str | Path) -> ProbeDataset:
    """An image folder per class (``ROOT/<class>/<image>``, the EuroSAT / UC-Merced / RESISC-45 layout),
    or ``ROOT/train/<class>/…`` and ``ROOT/test/<class>/…`` when the dataset has a split."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder; give a folder with one sub-folder of images per class "
                         "(ROOT/<class>/<image>), or a CSV of audio files with --audio-csv")
    paths: list[Path] = []
    labels: list[str] = []
    test: list[bool] | None = None
    if (root / "train").is_dir() and (root / "test").is_dir():
        test = []
        for part, flag in (("train", False), ("test", True)):
            for name, files in _class_folders(root / part).items():
                paths += files
                labels += [name] * len(files)
                test += [flag] * len(files)
        if not any(test) or all(test):
            raise InputError(f"{root}: train/ or test/ holds no images in class folders; fill both or remove "
                             "the split folders to use k-fold")
    else:
        for name, files in _class_folders(root).items():
            paths += files
            labels += [name] * len(files)
    if not paths:
        raise InputError(f"{root} holds no images in class sub-folders ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                         "lay it out as ROOT/<class>/<image>")
    ds = ProbeDataset("image", tuple(paths), tuple(labels), tuple(test) if test is not None else None)
    _check_classes(ds, str(root))
    return ds


def audio_csv(path: str | Path, audio_root: str | Path | None = None) -> ProbeDataset:
    """A CSV of audio files and labels in BirdCLEF's ``train_metadata.csv`` layout: ``primary_label`` and
    ``filename`` (relative to ``audio_root``, default the CSV's folder); an optional ``split`` column
    (train/test) is used as the dataset's split."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the CSV of audio files (columns primary_label, filename)")
    base = Path(audio_root).expanduser() if audio_root is not None else path.parent
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("primary_label", "filename") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path} lacks the column(s) {', '.join(missing)}; the audio probe reads BirdCLEF's "
                             "train_metadata.csv layout (primary_label, filename)")
        rows = list(reader)
    has_split = bool(rows) and all((r.get("split") or "").strip().lower() in ("train", "test") for r in rows)
    paths = tuple(base / r["filename"] for r in rows)
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise InputError(f"{len(absent)} audio file(s) listed in {path} do not exist, e.g. "
                         f"{', '.join(absent[:MAX_NAMED])}; give --audio-root, the folder the filenames are relative to")
    is_test = tuple(r["split"].strip().lower() == "test" for r in rows) if has_split else None
    ds = ProbeDataset("audio", paths, tuple(r["primary_label"].strip() for r in rows), is_test)
    _check_classes(ds, str(path))
    return ds


def _check_classes(ds: ProbeDataset, where: str) -> None:
    if len(ds.classes) < 2:
        found = f"only the class {ds.classes[0]!r}" if ds.classes else "no class"
        raise InputError(f"{where} has {found}; a probe needs at least two classes (one folder or label each)")


# ---------------------------------------------------------------- embeddings

def probe_image_tensor(image: Image.Image, sat_type: str) -> torch.Tensor:
    """The model input of one foreign image: its centre square resized to the scale-1 crop of ``sat_type``,
    then :func:`~sat2sound_core.preprocess.image.image_to_tensor` at scale 1 (see the module docstring)."""
    from sat2sound_core.model.config import TILE_SIZE
    from sat2sound_core.preprocess.image import image_to_tensor

    rgb = image.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    tile = int(TILE_SIZE[sat_type])
    square = rgb.crop((left, top, left + side, top + side)).resize((tile, tile), Image.Resampling.BICUBIC)
    return image_to_tensor(square, 1, sat_type)


def _read_image(path: Path, sat_type: str) -> torch.Tensor | None:
    try:
        with Image.open(path) as im:
            im.load()
            return probe_image_tensor(im, sat_type)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def embed(model: Sat2Sound, ds: ProbeDataset, batch_size: int = 32,
          progress: ProgressCallback | None = None) -> np.ndarray:
    """Frozen embeddings (N, D) float32 of every sample: images without metadata, audio's first 10 s.

    Raises :class:`InputError` naming the files that do not decode (all of them checked first)."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    sat_type = model.config.sat_type
    out: list[np.ndarray] = []
    bad: list[str] = []
    n = len(ds.paths)
    for start in range(0, n, batch_size):
        chunk = ds.paths[start:start + batch_size]
        if ds.modality == "image":
            tensors = [_read_image(p, sat_type) for p in chunk]
            bad += [str(p) for p, t in zip(chunk, tensors, strict=True) if t is None]
            good = [t for t in tensors if t is not None]
            if good and not bad:
                with torch.inference_mode():
                    enc = model.encode_image(torch.stack(good), scales=1, metadata=None)
                out.append(enc.embedding.float().cpu().numpy())
        else:
            mels = [_read_mel(p, bad) for p in chunk]
            good_m = [m for m in mels if m is not None]
            if good_m and not bad:
                with torch.inference_mode():
                    out.append(model.encode_audio(torch.stack(good_m)).embedding.float().cpu().numpy())
        report(progress, min(start + batch_size, n), n, f"{ds.modality} embeddings")
    if bad:
        more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        raise InputError(f"{len(bad)} {ds.modality} file(s) do not decode: {', '.join(bad[:MAX_NAMED])}{more}; "
                         "remove or replace them")
    return np.concatenate(out).astype(np.float32)


def _read_mel(path: Path, bad: list[str]) -> torch.Tensor | None:
    from sat2sound_core.preprocess.audio import log_mel, open_audio

    try:
        return log_mel(open_audio(path), 0, 0.0)
    except (InputError, OSError, RuntimeError, ValueError):
        bad.append(str(path))
        return None


# ---------------------------------------------------------------- classifier

def _classifier(seed: int) -> object:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    return make_pipeline(Normalizer(norm="l2"), StandardScaler(),
                         LogisticRegression(C=1.0, max_iter=5000, random_state=seed))


def check_folds(labels: Sequence[str], folds: int) -> None:
    """Refuse k-fold with k < 2 or with a class of fewer than k samples (naming the classes and the fix)."""
    if folds < 2:
        raise InputError(f"--folds must be at least 2, got {folds}")
    counts = {c: list(labels).count(c) for c in sorted(set(labels))}
    few = {c: k for c, k in counts.items() if k < folds}
    if few:
        named = ", ".join(f"{c} ({k})" for c, k in sorted(few.items())[:MAX_NAMED])
        raise InputError(f"{folds}-fold needs at least {folds} samples per class; too few in {named}. "
                         "Add samples or lower --folds")


def fit_probe(embeddings: np.ndarray, labels: Sequence[str], is_test: Sequence[bool] | None = None,
              folds: int = 5, seed: int = 0, modality: str = "image") -> ProbeResult:
    """Fit the linear probe and score it: on the given split, else stratified ``folds``-fold."""
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise InputError("a probe needs at least two classes")
    if is_test is not None:
        mask = np.asarray(is_test, dtype=bool)
        parts = [(np.flatnonzero(~mask), np.flatnonzero(mask))]
        protocol = "split"
        missing = sorted(set(y[mask]) - set(y[~mask]))
        if missing:
            raise InputError(f"the test part has classes with no training samples: {', '.join(missing)}")
    else:
        check_folds(labels, folds)
        parts = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(embeddings, y))
        protocol = f"k-fold (k={folds})"
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    accs: list[float] = []
    for train, test in parts:
        clf = _classifier(seed)
        clf.fit(embeddings[train], y[train])  # type: ignore[attr-defined]
        pred = np.asarray(clf.predict(embeddings[test]))  # type: ignore[attr-defined]
        accs.append(float((pred == y[test]).mean()))
        conf += confusion_matrix(y[test], pred, labels=list(classes))
    accuracy = float(np.trace(conf) / conf.sum())
    return ProbeResult(modality, classes, accuracy, protocol, tuple(accs), conf, int(len(y)))


def run_probe(model: Sat2Sound, ds: ProbeDataset, folds: int = 5, seed: int = 0, batch_size: int = 32,
              progress: ProgressCallback | None = None) -> ProbeResult:
    """Embed ``ds`` with the frozen model and fit the probe (:func:`embed` then :func:`fit_probe`)."""
    if ds.is_test is None:  # refuse too few samples per class before the slow part
        check_folds(ds.labels, folds)
    emb = embed(model, ds, batch_size=batch_size, progress=progress)
    return fit_probe(emb, ds.labels, ds.is_test, folds, seed, ds.modality)


# ---------------------------------------------------------------- outputs

def confusion_png(result: ProbeResult, path: str | Path, cell: int = 24) -> Path:
    """Write the confusion matrix as a PNG: row-normalised, white→dark blue, true classes as rows
    labelled ``i name`` on the left, predicted classes as columns labelled ``i`` on top, the count in
    each non-empty cell."""
    import io

    from PIL import ImageDraw, ImageFont

    conf = result.confusion.astype(np.float64)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1.0)
    k = norm.shape[0]
    font = ImageFont.load_default()
    names = [f"{i} {c}"[:40] for i, c in enumerate(result.classes)]
    left = 8 + 7 * max(len(n) for n in names)
    top = 20
    img = Image.new("RGB", (left + k * cell + 4, top + k * cell + 4), "white")
    draw = ImageDraw.Draw(img)
    for i in range(k):
        draw.text((4, top + i * cell + cell // 2 - 5), names[i], fill="black", font=font)
        draw.text((left + i * cell + 4, 4), str(i), fill="black", font=font)
        for j in range(k):
            v = float(norm[i, j])
            colour = (round(255 * (1 - v)), round(255 * (1 - v)), round(255 - 120 * v))
            box = (left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            draw.rectangle(box, fill=colour, outline=(200, 200, 200))
            if conf[i, j] and cell >= 16:
                draw.text((box[0] + 3, box[1] + cell // 2 - 5), str(int(conf[i, j])),
                          fill="white" if v > 0.5 else "black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return write_bytes(path, buf.getvalue())


def find_csv(reference: Path | None) -> Path | None:
    """``probing_tables.csv`` under ``reference`` (a reference folder, its ``paper/`` or the file itself)."""
    if reference is None:
        return None
    for cand in (reference, reference / PROBING_CSV, reference / "paper" / PROBING_CSV):
        if cand.is_file() and cand.name == PROBING_CSV:
            return cand
    return None


def read_paper_rows(path: Path | None) -> list[PaperProbeRow]:
    """The Sat2Sound rows of ``probing_tables.csv``; [] without it (rows that do not parse are skipped)."""
    from sat2sound_core.evaluation.paper import sat2sound_rows

    rows = []
    for r in sat2sound_rows(path):
        try:
            rows.append(PaperProbeRow(r["table"], r["modality"], r["benchmark"], r.get("backbone") or "",
                                      float(r["accuracy_percent"])))
        except (KeyError, ValueError):
            continue
    return rows


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def matching(rows: Sequence[PaperProbeRow], modality: str, benchmark: str) -> list[PaperProbeRow]:
    """Paper rows of this modality whose benchmark is ``benchmark`` (case, dashes and spaces ignored)."""
    return [r for r in rows if r.modality == modality and _key(r.benchmark) == _key(benchmark)]


def markdown(result: ProbeResult, benchmark: str, rows: Sequence[PaperProbeRow]) -> str:
    """The measured accuracy and, where the paper has the benchmark, its row and the difference."""
    lines = ["| benchmark | modality | protocol | source | accuracy % |", "|---|---|---|---|---|",
             f"| {benchmark} | {result.modality} | {result.protocol} | measured | {100 * result.accuracy:.2f} |"]
    for p in matching(rows, result.modality, benchmark):
        lines.append(f"| {p.benchmark} | {p.modality} | paper protocol | paper (table {p.table}) | "
                     f"{p.accuracy_percent:.2f} |")
        lines.append(f"| {p.benchmark} | {p.modality} | | difference | {100 * result.accuracy - p.accuracy_percent:+.2f} |")
    return "\n".join(lines) + "\n"


def write_outputs(result: ProbeResult, out: str | Path) -> tuple[Path, Path]:
    """``OUT/confusion.png`` and ``OUT/probe.json`` (accuracy, folds, classes, confusion counts)."""
    folder = Path(out).expanduser()
    png = confusion_png(result, folder / "confusion.png")
    js = write_text(folder / "probe.json", json.dumps(result.to_json(), indent=1) + "\n")
    return png, js
