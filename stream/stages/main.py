"""Entry point of one stage process: ``python -m stream.stages.main STAGE INDEX SPEC``.

The supervisor writes the resolved run (configuration, endpoints, output folder) to the
``SPEC`` JSON file (:class:`stream.stages.spec.StageSpec`) and starts each stage with it;
this module builds the stage (:mod:`stream.stages.build`: its engines, its sockets) and
runs its loop until SIGTERM. A stage that cannot be built (a stale or missing engine, an
address in use) exits with :data:`~stream.exitcodes.EX_CONFIG` and the message naming
its fix. ``STAGE`` ``fused`` (``placement: fused``) is a worker running detect and
features for a share of the streams (:mod:`stream.stages.fused`); classify then runs as
its own process.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import zmq
from pydantic import ValidationError

from stream.exitcodes import EX_CONFIG, FATAL_MARKER
from stream.stages.build import BUILD_ERRORS, build_fused, build_stage
from stream.stages.loop import StopFlag, run_batch_stage
from stream.stages.spec import StageSpec
from stream.transport.curve import Gatekeeper

log = logging.getLogger(__name__)

STAGES = ("capture", "detect", "features", "classify", "fused", "asr")
EXIT_LINGER_MS = 500


def run_stage(stage_name: str, index: int, spec: StageSpec) -> int:
    """Build the stage and run it until SIGTERM; the process exit code. A build error
    (engine refused, bad configuration, address in use) is logged with its fix and ends
    the stage with :data:`EX_CONFIG`, which the supervisor never restarts."""
    stop = StopFlag().install()
    context = zmq.Context()
    try:
        try:
            config, endpoints = spec.config, spec.endpoints
            out, state_dir = spec.out, spec.state_dir
            if stage_name == "fused":
                chain, fused_io = build_fused(index, config, endpoints, context)
            elif stage_name not in ("capture", "asr"):
                stage, stage_config, io = build_stage(stage_name, index, config, endpoints,
                                                      out, context, state_dir)
        except BUILD_ERRORS as error:
            log.error("%s %s", FATAL_MARKER, error)
            return EX_CONFIG
        if stage_name == "capture":
            from stream.stages.capture import run_capture

            return run_capture(config, index, endpoints, stop, context, state_dir)
        if stage_name == "asr":
            from stream.stages.asr import run_asr

            return run_asr(config, index, endpoints, stop, context, state_dir, out)
        if stage_name == "fused":
            from stream.stages.fused import run_fused

            try:
                run_fused(chain, fused_io, stop)
            finally:
                chain.close()
            return 0
        try:
            run_batch_stage(stage, io, stage_config, stop)
        finally:
            stage.close()
        return 0
    finally:
        # the ZAP handler of the internal hops (tcp transport) goes before the context
        Gatekeeper.stop_for(context)
        # a short linger lets the last messages out: an end of stream, the final status
        context.destroy(linger=EXIT_LINGER_MS)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in STAGES:
        print(f"usage: python -m stream.stages.main {{{','.join(STAGES)}}} INDEX SPEC_JSON",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO,
                        format=f"%(levelname)s {args[0]}[{args[1]}] %(name)s: %(message)s")
    try:
        spec = StageSpec.read(Path(args[2]))
    except (OSError, ValidationError) as error:
        log.error("%s stage spec %s unreadable: %s", FATAL_MARKER, args[2], error)
        return EX_CONFIG
    return run_stage(args[0], int(args[1]), spec)


if __name__ == "__main__":
    sys.exit(main())
