"""The command line, ``python -m training.gpu_job --out DIR [...]``: options onto ``run_job`` (training/GPU.md has
the exact device call)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from napari_sff.cli import anatomy_list

from . import __doc__ as _overview
from .profiles import PHASES
from .runner import INITS, check_options, run_job


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the job; exit status 1 only when no phase succeeded (the report says which failed)."""
    parser = argparse.ArgumentParser(prog="python -m training.gpu_job", description=_overview,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the few files to bring back")
    parser.add_argument("--work", help="folder for cases, cache and runs (default: a new temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="every phase with tiny settings on the CPU")
    parser.add_argument("--domain", choices=("default", "randomized"), default="default",
                        help="simulator domain of the training cases (napari_sff.simulate.simulate_case)")
    parser.add_argument("--muscle-prior", choices=("simulator", "population"), default="simulator",
                        help="how often the training cases' muscles are healthy, sarcopenic, myopathic or "
                             "fatty-atrophied (napari_sff.simulate.MUSCLE_PRIORS; model card section 0c)")
    parser.add_argument("--anatomies", type=anatomy_list,
                        help="comma-separated anatomies the simulated cases rotate through, e.g. "
                             "thigh,calf,abdomen,random,pelvis (default: the domain's; the pelvis only when named)")
    parser.add_argument("--init", choices=INITS, default="scratch",
                        help="'shipped': fine-tune the weights in napari_sff/weights (their architecture) instead "
                             "of training from scratch (what carried over best on the CPU: docs/model_card.md, "
                             "section 0); 'widened': the same with the shipped U-Net made twice as wide first "
                             "(training.widen; model card section 0d)")
    parser.add_argument("--unet-config", type=json.loads, default=None,
                        help="JSON U-Net width / depth trained from scratch, e.g. '{\"base_channels\": 32, "
                             "\"depth\": 5}' (on the CPU more cases no longer helped the shipped 16 / 4: "
                             "docs/model_card.md section 0)")
    parser.add_argument("--total-s", type=float, help="seconds for the whole job (default: the profile's)")
    parser.add_argument("--phases", type=lambda s: [v for v in s.split(",") if v], default=list(PHASES),
                        help=f"comma-separated subset of {', '.join(PHASES)}")
    parser.add_argument("--start-method", choices=("spawn", "fork", "forkserver"),
                        help="how phase processes start (default: spawn on the GPU, fork for the dry run)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.phases if name not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    try:  # options that cannot go together or cannot work: one line, before any work
        check_options(dry_run=args.dry_run, init=args.init, unet_config=args.unet_config,
                      muscle_prior=args.muscle_prior, anatomies=args.anatomies)
    except ValueError as exc:
        parser.error(str(exc))
    report = run_job(args.out, work=args.work, dry_run=args.dry_run, domain=args.domain, total_s=args.total_s,
                     phases=args.phases, start_method=args.start_method, init=args.init,
                     unet_config=args.unet_config, muscle_prior=args.muscle_prior, anatomies=args.anatomies)
    failed = [name for name, result in report["phases"].items() if result["status"] != "ok"]
    return 1 if len(failed) == len(report["phases"]) else 0

