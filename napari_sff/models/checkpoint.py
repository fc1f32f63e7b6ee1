"""Safe checkpoints: safetensors weights + one JSON header that is enough to rebuild the model.

Why safetensors only: a pickle-based ``.pt`` file can run arbitrary code when loaded, and plugin users load
weights they downloaded. The header key ``"napari_sff"`` holds::

    {"format": "napari-sff-checkpoint", "format_version": 1, "arch": "unet" | "ddpm",
     "config": {...dataclass fields...}, "package_version": "x.y.z", "weights_dtype": "float32" | "float16",
     "created": "ISO-8601 UTC", "metadata": {...caller's: normalisation, data, seed, metrics...}}

Every failure is a one-line :class:`CheckpointError` naming the file and what to do about it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from napari_sff.io.atomic import atomic_write

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "default_weights_path",
    "has_default_weights",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]

FORMAT_VERSION = 1
METADATA_KEY = "napari_sff"
_FORMAT_NAME = "napari-sff-checkpoint"
_PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
_STORE_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class CheckpointError(ValueError):
    """A checkpoint cannot be written or loaded; the message is one line naming the file and the remedy."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # force one line, whatever the cause said


def default_weights_path(arch: str) -> Path:
    """Where the packaged weights for ``arch`` live (``napari_sff/weights/{arch}.safetensors``)."""
    _check_arch(arch)
    return _WEIGHTS_DIR / f"{arch}.safetensors"


def has_default_weights(arch: str) -> bool:
    """Whether packaged weights for ``arch`` are installed."""
    return default_weights_path(arch).is_file()


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    config: Any = None,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model`` atomically to a ``.safetensors`` file with its config and ``metadata`` in the header.

    ``config`` (dataclass or dict) defaults to ``model.config``; it is checked against the weights by building
    the model on the meta device, so an unloadable checkpoint is never written. ``dtype=torch.float16`` halves
    the file (loading casts back to float32). A ``DistributedDataParallel`` wrapper is unwrapped.
    """
    from . import make_config

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: checkpoints must be named *.safetensors (napari-sff never writes pickle files)"
        )
    if dtype not in _STORE_DTYPES:
        raise CheckpointError(
            f"{path}: dtype must be one of {', '.join(_STORE_DTYPES.values())}, got {dtype}"
        )
    model = model if hasattr(model, "arch") else getattr(model, "module", model)
    arch = getattr(model, "arch", None)
    _check_arch(arch, path)
    cfg = make_config(arch, config if config is not None else getattr(model, "config", None))

    state = model.state_dict()
    _check_state(path, _expected_shapes(arch, cfg), state, what="model weights do not match the config")
    tensors = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in state.items()
    }
    header = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": dataclasses.asdict(cfg),
        "package_version": _package_version(),
        "weights_dtype": _STORE_DTYPES[dtype],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "metadata": dict(metadata or {}),
    }
    try:
        header_json = json.dumps(header, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: metadata is not JSON-serialisable ({exc}); pass plain numbers/strings/lists/dicts"
        ) from exc

    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: header_json})
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's ``"napari_sff"`` header as a dict, without building the model or reading weights."""
    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own SafetensorError type, plus OSError
        raise CheckpointError(
            f"{path} is corrupt or truncated ({_first_line(exc)}); re-download or re-save it"
        ) from exc
    if raw is None:
        raise CheckpointError(
            f"{path} has no napari-sff metadata (not written by napari_sff.models.save_checkpoint); "
            "re-save it with save_checkpoint so that the model config travels with the weights"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} has unreadable napari-sff metadata ({exc}); re-save it with save_checkpoint"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME or "arch" not in meta:
        raise CheckpointError(f"{path} has malformed napari-sff metadata; re-save it with save_checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {version!r} but this napari-sff reads up to {FORMAT_VERSION}; upgrade napari-sff"
        )
    return meta


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_arch: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the header config, load the weights strictly (float32), return (model, header).

    Never unpickles anything. The model is returned in eval mode on ``device``, with ``input_normalisation``: the
    ``normalise_t2w`` method its header records (``napari_sff.preprocess.normalisation_method``).
    """
    from napari_sff.preprocess import normalisation_method

    from . import build_model

    path = Path(path)
    meta = read_metadata(path)
    arch = meta["arch"]
    _check_arch(arch, path)
    if expected_arch is not None and arch != expected_arch:
        raise CheckpointError(
            f"{path} holds a {arch!r} model but {expected_arch!r} was requested; pick a {expected_arch} checkpoint"
        )
    try:
        model = build_model(arch, meta.get("config"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path} has a {arch} config this napari-sff cannot build ({_first_line(exc)})"
        ) from exc
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({_first_line(exc)}); re-download or re-save it"
        ) from exc
    target = model.state_dict()
    _check_state(
        path, {k: tuple(v.shape) for k, v in target.items()}, tensors, what="weights do not match its config"
    )
    tensors = {k: v.to(target[k].dtype) for k, v in tensors.items()}
    model.load_state_dict(tensors, strict=True)
    try:  # weights that expect an input this version cannot make are refused, not run on the wrong one
        model.input_normalisation = normalisation_method(meta.get("metadata", {}).get("input_normalisation"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return model.to(device).eval(), meta


# -- helpers ---------------------------------------------------------------------------------------------------


def _check_arch(arch: Any, path: Path | None = None) -> None:
    from . import ARCHITECTURES

    if arch not in ARCHITECTURES:
        where = f"{path}: " if path is not None else ""
        raise CheckpointError(
            f"{where}unknown architecture {arch!r}; this napari-sff knows {', '.join(sorted(ARCHITECTURES))} (upgrade napari-sff?)"
        )


def _check_file(path: Path) -> None:
    """Refuse missing files and anything pickle-based before safetensors touches it."""
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file; pass the path of a .safetensors checkpoint")
    pickle_msg = (
        f"{path} is a pickle-based PyTorch file; napari-sff only loads .safetensors checkpoints: re-save it with "
        "napari_sff.models.save_checkpoint (after torch.load, only if you trust where the file came from)"
    )
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(pickle_msg)
    with open(path, "rb") as fh:
        head = fh.read(9)
    # zip = torch.save's default container; 0x80 0x0N = a raw pickle (legacy torch.save, pickle.dump)
    is_zip = head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
    if is_zip or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise CheckpointError(pickle_msg)
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) < 9 or head[8:9] != b"{" or 8 + header_len > path.stat().st_size:
        raise CheckpointError(
            f"{path} is not a valid safetensors file (corrupt, truncated or another format); re-download or re-save it"
        )


def _expected_shapes(arch: str, cfg: Any) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of a fresh model built on the meta device (no memory, no init cost)."""
    from . import build_model

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_model(arch, cfg).state_dict().items()}


def _check_state(
    path: Path, expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], *, what: str
) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or shapes:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
            if keys
        ]
        raise CheckpointError(
            f"{path}: {what}: {'; '.join(parts)}; use a checkpoint saved from the same config"
        )


def _json_default(obj: Any) -> Any:
    """Let numpy/torch scalars and arrays, paths and dataclasses through json.dumps."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _package_version() -> str:
    from napari_sff import __version__

    return __version__
