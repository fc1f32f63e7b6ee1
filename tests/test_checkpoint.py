"""Tests for safetensors checkpoints: round trips, fp16 storage, and one-line refusals of anything unsafe/broken."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import napari_sff
from napari_sff.models import (
    CheckpointError,
    ConditionalDDPM,
    DDPMConfig,
    SFFUNet,
    UNetConfig,
    default_weights_path,
    has_default_weights,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)

TINY_UNET = UNetConfig(base_channels=4, depth=3)
TINY_DDPM = DDPMConfig(
    channels=(16, 32), attention_levels=(False, True), num_head_channels=16, norm_num_groups=16
)
PICKLE_MSG = "is a pickle-based PyTorch file; napari-sff only loads .safetensors checkpoints: re-save it with"


@pytest.fixture(scope="module")
def unet() -> SFFUNet:
    torch.manual_seed(0)
    return SFFUNet(TINY_UNET).eval()


@pytest.fixture
def unet_file(unet, tmp_path) -> Path:
    return save_checkpoint(unet, tmp_path / "unet.safetensors", config=TINY_UNET, metadata={"seed": 0})


def _one_line_error(excinfo, path: Path) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_unet_round_trip_is_bit_exact(unet, tmp_path):
    meta_in = {
        "normalisation": "t2w-slice-p99",
        "seed": 7,
        "metrics": {"mae": np.float32(0.05)},
        "data": "phantoms",
    }
    path = save_checkpoint(unet, tmp_path / "sub" / "m.safetensors", config=TINY_UNET, metadata=meta_in)
    model, meta = load_checkpoint(path, expected_arch="unet")
    assert isinstance(model, SFFUNet) and not model.training
    for (k, a), (k2, b) in zip(unet.state_dict().items(), model.state_dict().items(), strict=True):
        assert k == k2 and b.dtype == torch.float32 and torch.equal(a, b)
    x = torch.rand(1, 1, 12, 9)
    with torch.no_grad():
        assert torch.equal(unet(x), model(x))
    assert meta["arch"] == "unet" and meta["format_version"] == 1 and meta["weights_dtype"] == "float32"
    assert meta["package_version"] == napari_sff.__version__
    assert UNetConfig(**meta["config"]) == TINY_UNET == model.config
    assert meta["metadata"]["metrics"]["mae"] == pytest.approx(0.05) and meta["metadata"]["seed"] == 7
    assert read_metadata(path) == meta
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"], "no temp files left behind"


def test_ddpm_round_trip_keeps_config_and_outputs(tmp_path):
    torch.manual_seed(0)
    ddpm = ConditionalDDPM(TINY_DDPM).eval()
    path = save_checkpoint(ddpm, tmp_path / "ddpm.safetensors", metadata={})  # config taken from the model
    model, meta = load_checkpoint(path, expected_arch="ddpm")
    assert isinstance(model, ConditionalDDPM) and model.config == TINY_DDPM
    assert DDPMConfig(**meta["config"]) == TINY_DDPM  # JSON lists come back as tuples
    x, t = torch.rand(2, 2, 8, 8), torch.tensor([5, 900])
    with torch.no_grad():
        assert torch.equal(ddpm.network(x, t), model.network(x, t))


def test_fp16_storage_loads_as_float32(unet, tmp_path):
    p32 = save_checkpoint(unet, tmp_path / "a.safetensors", config=TINY_UNET, metadata={})
    p16 = save_checkpoint(
        unet, tmp_path / "b.safetensors", config=TINY_UNET, metadata={}, dtype=torch.float16
    )
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    model, meta = load_checkpoint(p16)
    assert meta["weights_dtype"] == "float16"
    for a, b in zip(unet.state_dict().values(), model.state_dict().values(), strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["weights.pt", "weights.pth", "weights.ckpt", "weights.pkl"])
def test_pickle_suffixes_refused(unet, tmp_path, name):
    path = tmp_path / name
    torch.save(unet.state_dict(), path)
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(path)
    assert PICKLE_MSG in _one_line_error(excinfo, path)


@pytest.mark.parametrize("kind", ["zip", "legacy", "pickle"])
def test_pickle_content_refused_whatever_the_name(unet, tmp_path, kind):
    path = tmp_path / "looks_safe.safetensors"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    else:
        torch.save(unet.state_dict(), path, _use_new_zipfile_serialization=kind == "zip")
    for fn in (load_checkpoint, read_metadata):
        with pytest.raises(CheckpointError) as excinfo:
            fn(path)
        assert PICKLE_MSG in _one_line_error(excinfo, path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 20 / 1e9, 4])
def test_truncated_file_refused(unet_file, keep):
    data = unet_file.read_bytes()
    unet_file.write_bytes(data[: int(keep * len(data)) if keep < 1 else int(keep)])
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(unet_file)
    _one_line_error(excinfo, unet_file)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file") as excinfo:
        load_checkpoint(tmp_path / "nope.safetensors")
    _one_line_error(excinfo, tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="not a file"):
        read_metadata(tmp_path)


def test_wrong_expected_arch(unet_file):
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(unet_file, expected_arch="ddpm")
    assert "holds a 'unet' model but 'ddpm' was requested" in _one_line_error(excinfo, unet_file)


def test_plain_safetensors_without_metadata_refused(unet, tmp_path):
    path = tmp_path / "bare.safetensors"
    save_file(unet.state_dict(), str(path))
    with pytest.raises(CheckpointError, match="no napari-sff metadata") as excinfo:
        load_checkpoint(path)
    _one_line_error(excinfo, path)


def _rewrite(path: Path, tensors: dict, **header_changes) -> None:
    header = read_metadata(path) | header_changes
    save_file(tensors, str(path), metadata={"napari_sff": json.dumps(header)})


def test_unknown_arch_and_newer_format_refused(unet, unet_file):
    _rewrite(unet_file, unet.state_dict(), arch="transformer")
    with pytest.raises(CheckpointError, match="unknown architecture 'transformer'"):
        load_checkpoint(unet_file)
    _rewrite(unet_file, unet.state_dict(), arch="unet", format_version=99)
    with pytest.raises(CheckpointError, match="upgrade napari-sff"):
        read_metadata(unet_file)


def test_state_dict_mismatch_refused(unet, unet_file):
    state = dict(unet.state_dict())
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(3)
    _rewrite(unet_file, state)
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(unet_file)
    msg = _one_line_error(excinfo, unet_file)
    assert "missing 1" in msg and "unexpected 1" in msg
    _rewrite(unet_file, unet.state_dict(), config={**read_metadata(unet_file)["config"], "base_channels": 8})
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(unet_file)


def test_save_refuses_bad_names_and_mismatched_config(unet, tmp_path):
    with pytest.raises(CheckpointError, match=r"\*\.safetensors"):
        save_checkpoint(unet, tmp_path / "m.pt", config=TINY_UNET, metadata={})
    with pytest.raises(CheckpointError, match="do not match the config"):
        save_checkpoint(unet, tmp_path / "m.safetensors", config=UNetConfig(base_channels=8), metadata={})
    with pytest.raises(CheckpointError, match="JSON"):
        save_checkpoint(unet, tmp_path / "m.safetensors", metadata={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_gives_its_model_the_input_normalisation_it_records(unet, tmp_path):
    """load_checkpoint is where every loader gets a model: the method predict normalises with comes with it."""
    plain = save_checkpoint(unet, tmp_path / "plain.safetensors", config=TINY_UNET, metadata={"seed": 0})
    assert load_checkpoint(plain)[0].input_normalisation == "p99"  # made before the name was recorded
    fat = save_checkpoint(unet, tmp_path / "fat.safetensors", config=TINY_UNET,
                          metadata={"input_normalisation": "t2w-slice-subcutaneous-fat-p75-band-v1"})
    assert load_checkpoint(fat)[0].input_normalisation == "fat"
    newer = save_checkpoint(unet, tmp_path / "newer.safetensors", config=TINY_UNET,
                            metadata={"input_normalisation": "t2w-slice-zscore-v9"})
    with pytest.raises(CheckpointError) as excinfo:
        load_checkpoint(newer)
    assert "'t2w-slice-zscore-v9'" in _one_line_error(excinfo, newer)


def test_default_weights_path():
    path = default_weights_path("ddpm")
    assert path.name == "ddpm.safetensors" and path.parent == Path(napari_sff.__file__).parent / "weights"
    assert has_default_weights("unet") == default_weights_path("unet").is_file()
    with pytest.raises(ValueError, match="unknown architecture"):
        default_weights_path("gan")
