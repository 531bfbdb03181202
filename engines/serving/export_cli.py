"""``hidemo engines export-triton``: the verified engines as a Triton model repository.

The options are declared here (argparse only, nothing heavy at import) so ``hidemo/cli.py``
stays a dispatcher; the work is :func:`engines.serving.repository.write_repository`.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from engines.serving.settings import BatchingPolicy

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.05-py3"
"""NVIDIA's Triton container of release 24.05 (Triton 2.46): the release whose
``model_config.proto`` (shipped in hidemo's tritonclient 2.46.0) the written configurations
are checked against. Later releases read the same configuration."""


DEFAULTS = BatchingPolicy()


def add_export_triton_parser(commands: argparse._SubParsersAction) -> None:
    """``engines export-triton`` and its options (defaults from :class:`BatchingPolicy`)."""
    parser = commands.add_parser(
        "export-triton", help="write a Triton Inference Server model repository from the "
                              "verified engines")
    parser.add_argument("--profile", default="edge",
                        help="model set: paper, edge or tiny (default: %(default)s)")
    parser.add_argument("--engine-dir", type=Path, default=None,
                        help="where engines live (default: artifacts/engines/PROFILE)")
    parser.add_argument("--repo", type=Path, required=True, metavar="DIR",
                        help="the model repository to write (a new or empty folder, or an "
                             "earlier export)")
    parser.add_argument("--engines", nargs="+", default=None, metavar="ENGINE",
                        help="only these engines (default: every engine in the folder)")
    parser.add_argument("--model-prefix", default=None, metavar="PREFIX",
                        help="served model name = PREFIX + engine name (default: none)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULTS.max_batch_size,
                        metavar="N",
                        help="largest batch Triton forms for a batched engine "
                             "(default: %(default)s)")
    parser.add_argument("--preferred-batch-sizes", type=int, nargs="*", default=None,
                        metavar="N",
                        help="batch sizes the dynamic batcher tries to form first (default: "
                             f"{' '.join(map(str, DEFAULTS.preferred_batch_sizes))}, "
                             "those up to --max-batch-size)")
    parser.add_argument("--max-queue-delay-us", type=int, metavar="US",
                        default=DEFAULTS.max_queue_delay_us,
                        help="microseconds a request may wait for others to join its batch "
                             "(default: %(default)s)")
    parser.add_argument("--instances", type=int, default=DEFAULTS.instances, metavar="N",
                        help="model instances per device (default: %(default)s)")
    parser.add_argument("--kind", default=DEFAULTS.kind,
                        choices=("KIND_AUTO", "KIND_CPU", "KIND_GPU"),
                        help="where the instances run; KIND_AUTO: the GPU when there is one "
                             "(default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a hidemo export, "
                             "replacing models of the same names")


def export_triton_command(args: argparse.Namespace) -> int:
    from engines.serving.repository import write_repository

    preferred = (tuple(args.preferred_batch_sizes) if args.preferred_batch_sizes is not None
                 else tuple(s for s in DEFAULTS.preferred_batch_sizes
                            if s <= args.max_batch_size))
    policy = BatchingPolicy(max_batch_size=args.max_batch_size,
                            preferred_batch_sizes=preferred,
                            max_queue_delay_us=args.max_queue_delay_us,
                            instances=args.instances, kind=args.kind)
    written = write_repository(args.engine_dir, args.repo, names=args.engines,
                               prefix=args.model_prefix or "", policy=policy, force=args.force,
                               profile=args.profile)
    for model in written:
        print(model.line())
    print("serve it with NVIDIA's Triton container:")
    print(f"  {docker_command(args.repo)}")
    return 0


def docker_command(repo: Path, image: str = TRITON_IMAGE) -> str:
    """The command that serves ``repo`` with NVIDIA's Triton container."""
    mount = shlex.quote(str(repo)) if repo.is_absolute() else f"$PWD/{shlex.quote(str(repo))}"
    return (f"docker run --rm --gpus all -p8000:8000 -p8001:8001 -p8002:8002 "
            f"-v {mount}:/models {image} tritonserver --model-repository=/models")
