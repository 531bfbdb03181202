"""``hidemo features ...``: the arguments, and the commands that run them.

Only argparse at import time: ``hidemo`` builds this parser for every command (``--help``
included), so the heavy modules (engines, MediaPipe, OpenCV) load inside
:func:`features_command`.

Example:
    hidemo features imigue-manifest --root /data/imigue --out data/imigue.csv
    hidemo features extract --manifest data/imigue.csv --profile edge --out artifacts/features/edge
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PROFILE = "edge"
NO_PERSON_CHOICES = ("skip", "full-frame")
SKELETON_CHOICES = ("prefer", "ignore")


def add_features_parser(jobs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``features extract`` to the ``hidemo`` job parsers."""
    features = jobs.add_parser("features", help="extract per-video features for training")
    commands = features.add_subparsers(dest="command", required=True)
    extract = commands.add_parser(
        "extract", help="run a manifest's videos through the engines into a feature store",
        description="Decode each video of the manifest, sample it at the profile's analysis "
                    "rates, and store the person's image embeddings, keypoints and transcript "
                    "embedding. Resumable: videos already in the store are skipped.")
    extract.add_argument("--manifest", type=Path, required=True, metavar="FILE",
                         help="CSV: video_id, path, label, subject, split[, transcript, "
                              "skeleton_dir]")
    extract.add_argument("--profile", default=DEFAULT_PROFILE,
                         help="model set: paper, edge or tiny (default: %(default)s)")
    extract.add_argument("--engine-dir", type=Path, default=None,
                         help="where engines live (default: artifacts/engines/PROFILE)")
    extract.add_argument("--out", type=Path, required=True, metavar="STORE",
                         help="feature store folder (created, or resumed if it exists)")
    extract.add_argument("--limit", type=int, default=None, metavar="N",
                         help="only the first N rows of the manifest")
    extract.add_argument("--skeletons", choices=SKELETON_CHOICES, default="prefer",
                         help="keypoints from the manifest's OpenPose skeleton_dir when given "
                              "(prefer) or always from MediaPipe (ignore) (default: "
                              "%(default)s)")
    extract.add_argument("--no-person", choices=NO_PERSON_CHOICES, default="skip",
                         help="a frame where the detector finds nobody: no image embedding "
                              "and zero keypoints (skip), or use the whole frame as the crop "
                              "(full-frame: single-speaker video, random-weights detector) "
                              "(default: %(default)s)")
    extract.add_argument("--detector", choices=("auto", "yolo", "mediapipe"), default="auto",
                         help="person finder, as the live run's detect.detector: the profile's "
                              "YOLO engine, MediaPipe Pose, or auto (yolo unless its weights "
                              "are random) (default: %(default)s)")
    extract.add_argument("--keypoints", choices=("auto", "mediapipe", "engines"),
                         default="auto",
                         help="keypoints as the live run's keypoints setting: MediaPipe on each "
                              "crop, the keypoint engines, or auto (the engines when built) "
                              "(default: %(default)s)")
    extract.add_argument("--batch-size", type=int, default=16,
                         help="frames per detector call (default: %(default)s)")
    extract.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_imigue_parser(commands)
    return features


def _add_imigue_parser(commands: argparse._SubParsersAction) -> None:
    imigue = commands.add_parser(
        "imigue-manifest", help="write the manifest of an iMiGUE folder (MiGA 2025 split)",
        description="One row per video of iMiGUE's label table, with its label (Win/Lose), "
                    "player and cross-subject split, and the video file and skeleton folder "
                    "found under --root.")
    imigue.add_argument("--root", type=Path, required=True, help="the iMiGUE folder")
    imigue.add_argument("--labels", type=Path, default=None, metavar="CSV",
                        help="the label table (default: ROOT/labels_20200831.csv)")
    imigue.add_argument("--out", type=Path, required=True, metavar="FILE",
                        help="manifest CSV to write")
    imigue.add_argument("--video-pattern", default="videos/{id}.mp4",
                        help="video path under ROOT; {id} the table's id, {num} the id as "
                             "an int, e.g. videos/{num:04d}.mp4 (default: %(default)s)")
    imigue.add_argument("--skeleton-pattern", default="skeletons/{id}",
                        help="OpenPose JSON folder under ROOT (default: %(default)s)")
    imigue.add_argument("--val-subjects", type=int, nargs="*", default=[], metavar="ID",
                        help="players held out of training as 'val' (default: none)")


def features_command(args: argparse.Namespace) -> int:
    """Run ``hidemo features extract``; returns the exit code (1 only if every video failed)."""
    from engines.profiles import get_profile
    from training.data.manifest import read_manifest
    from training.features.extract import (
        ExtractSettings,
        Skeletons,
        extract_manifest,
        open_store,
        store_info,
    )
    from training.features.frames import NoPerson
    from training.features.perception import Perception, PerceptionChoice

    if args.command == "imigue-manifest":
        return _imigue_manifest_command(args)
    if args.command != "extract":
        raise AssertionError(f"unhandled features command {args.command}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit is {args.limit}; it must be at least 1")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size is {args.batch_size}; it must be at least 1")
    profile = get_profile(args.profile)
    rows = read_manifest(args.manifest)
    if args.limit is not None:
        rows = rows[:args.limit]
    engine_dir = args.engine_dir or Path("artifacts") / "engines" / profile.name
    settings = ExtractSettings(image_rate=profile.classifier.image_rate,
                               keypoint_rate=profile.classifier.keypoint_rate,
                               no_person=NoPerson(args.no_person),
                               skeletons=Skeletons(args.skeletons), batch_size=args.batch_size)
    perception = Perception.from_engine_dir(
        engine_dir, profile, choice=PerceptionChoice(detector=args.detector,
                                                     keypoints=args.keypoints,
                                                     crop_margin=settings.crop_margin))
    try:
        store = open_store(args.out, store_info(profile.name, perception, settings))
        summary = extract_manifest(rows, store, perception, settings,
                                   progress=False if args.no_progress else None)
    finally:
        perception.close()
    print("\n".join(summary.lines()))
    print(f"store: {store.root} ({len(store.video_ids())} videos)")
    return summary.exit_code


def _imigue_manifest_command(args: argparse.Namespace) -> int:
    from collections import Counter

    from training.data.imigue import imigue_manifest
    from training.data.manifest import write_manifest

    labels = args.labels or args.root / "labels_20200831.csv"
    rows = imigue_manifest(args.root, labels, video_pattern=args.video_pattern,
                           skeleton_pattern=args.skeleton_pattern,
                           val_subjects=args.val_subjects)
    write_manifest(args.out, rows)
    counts = Counter((row.split, row.label) for row in rows)
    splits = ", ".join(f"{split} {counts[(split, 1)]} win / {counts[(split, 0)]} lose"
                       for split in ("train", "val", "test") if counts[(split, 0)]
                       or counts[(split, 1)])
    found = sum(bool(row.path) for row in rows)
    skeletons = sum(bool(row.skeleton_dir) for row in rows)
    print(f"manifest: {args.out} ({len(rows)} videos: {splits}; {found} video files and "
          f"{skeletons} skeleton folders found)")
    return 0
