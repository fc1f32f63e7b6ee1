"""Average the weights of models of one lineage (U-Nets, or DDPMs) into one model (a "model soup").

    python -m training.soup OUT.safetensors RUN_A/best.safetensors RUN_B/best.safetensors \\
        --cache CACHE [--weight 0.5 --weight 0.5]

Fine-tunes of the same weights on different data or seeds, and the weights they started from, stay in one basin
of the loss, so their average is a working network whose errors are those the runs share, not those each made
alone (Wortsman et al., "Model soups", ICML 2022; averaging a fine-tune with its start, "Robust fine-tuning of
zero-shot models", CVPR 2022, keeps what the start knew of other data). It costs nothing at prediction time,
unlike an ensemble. The ingredients must share the architecture and config; whether they share a lineage only
their history says, and only held-out scores can tell whether a soup is better (model card section 0).

The soup's header keeps what predict checks a scan against: the pixel spacings and image statistics of every
ingredient's training data (their union), and for a U-Net the soup's own bottleneck features over the training
slices of ``--cache`` (features are a property of the weights, so they are computed again, not averaged). The
ingredients' training headers are kept under ``soup``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from napari_sff.models import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from napari_sff.provenance import file_sha256
from training.data import Augmentation


def average_state(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * state_i per tensor (float32); integer buffers must agree and are kept."""
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            averaged[key] = sum(w * state[key].float() for w, state in zip(weights, states, strict=True))
        elif all(torch.equal(first, state[key]) for state in states[1:]):
            averaged[key] = first.clone()
        else:
            raise ValueError(f"the ingredients' integer buffer {key!r} differs; they cannot be averaged")
    return averaged


def union_ranges(ranges: Sequence[dict[str, list[float]] | None]) -> dict[str, list[float]] | None:
    """Per statistic the range every ingredient's training data covers together; None if one recorded none."""
    if not ranges or any(r is None for r in ranges):
        return None
    keys = set.intersection(*(set(r) for r in ranges))
    return {k: [min(r[k][0] for r in ranges), max(r[k][1] for r in ranges)] for k in sorted(keys)}


def make_soup(out: Path, ingredients: Sequence[Path], cache: Path | None, weights: Sequence[float] | None = None, *,
              dtype: torch.dtype = torch.float16, device: str = "cpu", overwrite: bool = False) -> Path:
    """Write the weighted average of ``ingredients`` (checkpoints of one architecture and config) to ``out``."""
    from training.stamp import stamp_features

    if len(ingredients) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    weights = [1.0 / len(ingredients)] * len(ingredients) if weights is None else [float(w) for w in weights]
    if len(weights) != len(ingredients) or min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
        raise ValueError(f"give one non-negative --weight per checkpoint, summing to 1 (got {weights})")
    out = Path(out)
    if out.resolve() in {Path(p).resolve() for p in ingredients}:
        raise ValueError(f"{out} is one of the ingredients; write the soup to a new file")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    headers = [read_metadata(p) for p in ingredients]
    for path, header in zip(ingredients, headers, strict=True):
        if header["arch"] != headers[0]["arch"]:
            raise CheckpointError(f"{path} holds a {header['arch']}, {ingredients[0]} a {headers[0]['arch']}; "
                                  "a soup is made of one architecture")
        if header["config"] != headers[0]["config"]:
            raise CheckpointError(f"{path} has another config than {ingredients[0]} ({header['config']} vs "
                                  f"{headers[0]['config']}); only one architecture can be averaged")
    arch = headers[0]["arch"]
    if arch == "unet" and cache is None:
        raise ValueError("a U-Net soup needs --cache (its feature statistics come from the training slices)")
    models = [load_checkpoint(p, expected_arch=arch)[0] for p in ingredients]
    inputs = {m.input_normalisation for m in models}
    if len(inputs) > 1:
        raise CheckpointError(f"the ingredients were trained on different input normalisations "
                              f"({', '.join(sorted(inputs))}); average only weights that read the same input")
    soup = models[0]
    soup.load_state_dict(average_state([m.state_dict() for m in models], weights))
    metas = [h.get("metadata", {}) for h in headers]
    spacings = [m.get("input_spacing_mm") for m in metas]
    metadata = {
        "input_spacing_mm": (None if any(s is None for s in spacings)
                             else [min(s[0] for s in spacings), max(s[1] for s in spacings)]),
        "input_statistics": union_ranges([m.get("input_statistics") for m in metas]),
        "normalisation": metas[0].get("normalisation"),
        **({"input_normalisation": metas[0]["input_normalisation"]} if "input_normalisation" in metas[0] else {}),
        "weights_history": f"soup (python -m training.soup) of {len(ingredients)} {arch} checkpoints of one "
                           "lineage, weights " + ", ".join(f"{w:.3f}" for w in weights),
        "soup": [{"file": Path(p).name, "sha256": file_sha256(p), "weight": w,
                  **{k: m.get(k) for k in ("weights_history", "steps", "epoch", "training", "training_data",
                                           "validation", "train_seconds", "device")}}
                 for p, w, m in zip(ingredients, weights, metas, strict=True)],
    }
    save_checkpoint(soup, out, config=headers[0]["config"], metadata=metadata, dtype=dtype)
    if arch == "unet":  # from the file just written: the features of the weights as stored (float16), not the
        # float32 average in memory, so they match what predict will compute
        augmentation = Augmentation(**(metas[0].get("training") or {}).get("augmentation", {}))
        stamp_features([out], cache, augmentation, device=device)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the soup to write (.safetensors)")
    parser.add_argument("ingredients", nargs="+", help="checkpoints of one lineage (fine-tunes of one starting "
                        "point, and that starting point)")
    parser.add_argument("--cache", help="U-Nets: a slice cache of the ingredients' training data (the soup's "
                        "feature statistics come from its training split)")
    parser.add_argument("--weight", type=float, action="append", help="one per checkpoint (default: equal)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing soup (never an ingredient)")
    args = parser.parse_args(argv)
    try:
        out = make_soup(Path(args.out), [Path(p) for p in args.ingredients],
                        None if args.cache is None else Path(args.cache), args.weight,
                        dtype=getattr(torch, args.dtype), device=args.device, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as exc:
        print(f"python -m training.soup: error: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: soup of {len(args.ingredients)} checkpoints, sha256 {file_sha256(out)[:12]}…")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
