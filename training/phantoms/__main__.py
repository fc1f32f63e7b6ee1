"""``python -m training.phantoms --out DIR --cases N --seed S``: write a folder of independent phantom cases."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from training.phantoms.case import write_cases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.phantoms", description=__doc__)
    parser.add_argument("--out", required=True, help="folder to create (or an empty one, or --overwrite ours)")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="in-plane matrix (even)")
    parser.add_argument("--slices", type=int, default=12)
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier phantom folder")
    parser.add_argument("--workers", type=int, default=1, help="render cases in this many processes")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        manifest = write_cases(args.out, args.cases, seed=args.seed, size=args.size, n_slices=args.slices,
                               overwrite=args.overwrite, workers=args.workers)
    except (ValueError, FileExistsError) as exc:
        print(f"python -m training.phantoms: error: {exc}", file=sys.stderr)
        return 2
    seconds = [entry["render_seconds"] for entry in json.loads(manifest.read_text())["cases"]]
    print(f"wrote {args.cases} case(s) to {args.out} in {time.perf_counter() - started:.1f} s "
          f"(render {min(seconds):.2f}-{max(seconds):.2f} s per case; manifest {manifest.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
