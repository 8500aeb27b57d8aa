"""The ``sat2sound evaluate`` command body (its parser lives in :mod:`sat2sound_core.cli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sat2sound_core.common.files import write_text
from sat2sound_core.common.progress import ProgressCallback


def reference_folder(given: Path | None, setting: str) -> Path | None:
    """Where the paper's tables are: ``--reference``, ``SAT2SOUND_REFERENCE``, else ``../shared/reference``
    beside the working directory or the repository, when one exists."""
    if given is not None:
        return given
    if setting:
        return Path(setting).expanduser()
    repo = Path(__file__).resolve().parents[2]
    for cand in (Path.cwd() / ".." / "shared" / "reference", repo / ".." / "shared" / "reference"):
        if cand.is_dir():
            return cand
    return None


def evaluate(args: argparse.Namespace, progress: ProgressCallback | None,
             model_progress: ProgressCallback | None) -> int:
    """Run :func:`~sat2sound_core.evaluation.run.run_evaluation` for parsed CLI arguments; print the table."""
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.evaluation import paper
    from sat2sound_core.evaluation.data import check_mel_index, dataset_spec
    from sat2sound_core.evaluation.run import (
        EvalRequest,
        checkpoint_identity,
        needed_modalities,
        run_evaluation,
    )
    from sat2sound_core.evaluation.variants import parse_composed
    from sat2sound_core.weights.loading import load_model

    settings = get_settings()
    composed = parse_composed(args.composed, args.task)  # cheap checks before the model loads
    check_mel_index(args.mel_index)
    spec = dataset_spec(args.dataset)
    model = load_model(args.checkpoint, device=args.device, precision=args.precision, progress=model_progress,
                       text_encoder="text" in needed_modalities(args.task, composed))
    source = Path(args.checkpoint).expanduser()
    ckpt_path = str(source.resolve()) if source.is_file() else str(args.checkpoint)
    request = EvalRequest(spec.name, split=args.split, data=args.data, scale=args.scale, task=args.task,
                          composed=composed, mel_index=args.mel_index, limit=args.limit, batch_size=args.batch_size,
                          metadata=args.metadata)
    rep = run_evaluation(model, request, checkpoint=checkpoint_identity(args.checkpoint),
                         cache_root=settings.cache_dir("evaluation"), ckpt_path=ckpt_path,
                         expr=source.stem if source.is_file() else str(args.checkpoint),
                         offline=settings.is_offline, progress=progress)
    lines = "".join(json.dumps(r) + "\n" for r in rep.records)
    if args.out is not None:
        write_text(args.out, lines)
    else:
        print(lines, end="")
    csv = paper.find_csv(reference_folder(args.reference, settings.reference))
    print(f"\n{rep.rows} rows of {spec.name} {request.split} from {rep.origin}; embeddings: {rep.stats.computed} "
          f"pieces computed, {rep.stats.reused} from the cache ({rep.cache_folder})")
    if csv is None:
        print("(the paper's tables were not found: set SAT2SOUND_REFERENCE or --reference for the side-by-side)")
    print()
    print(paper.markdown(rep.records, paper.read_rows(csv)), end="")
    if args.out is not None:
        print(f"\nwrote {args.out}")
    return 0


def probe(args: argparse.Namespace, progress: ProgressCallback | None,
          model_progress: ProgressCallback | None) -> int:
    """Run :func:`~sat2sound_core.evaluation.probe.run_probe` for parsed CLI arguments; print the table."""
    from sat2sound_core.common.errors import InputError
    from sat2sound_core.common.settings import get_settings
    from sat2sound_core.evaluation import probe as pr
    from sat2sound_core.weights.loading import load_model

    settings = get_settings()
    data = Path(args.data).expanduser()
    if data.suffix.lower() == ".csv":
        ds = pr.audio_csv(data, args.audio_root)
    else:
        if args.audio_root is not None:
            raise InputError("--audio-root goes with a CSV of audio files; an image folder needs none")
        ds = pr.image_folder(data)
    if ds.is_test is None:
        pr.check_folds(ds.labels, args.folds)  # before the model loads
    benchmark = args.benchmark or (data.stem if data.suffix.lower() == ".csv" and data.stem != "train_metadata"
                                   else (data.parent.name if data.suffix else data.name))
    model = load_model(args.checkpoint, device=args.device, precision=args.precision, progress=model_progress,
                       text_encoder=False)
    result = pr.run_probe(model, ds, folds=args.folds, seed=args.seed, batch_size=args.batch_size, progress=progress)
    rows = pr.read_paper_rows(pr.find_csv(reference_folder(args.reference, settings.reference)))
    print(f"{result.samples} {ds.modality} samples, {len(result.classes)} classes, {result.protocol}: "
          f"accuracy {100 * result.accuracy:.2f} %")
    if not rows:
        print("(the paper's probing table was not found: set SAT2SOUND_REFERENCE or --reference for the side-by-side)")
    print()
    print(pr.markdown(result, benchmark, rows), end="")
    if args.out is not None:
        png, js = pr.write_outputs(result, args.out)
        print(f"\nwrote {png} and {js}")
    return 0
