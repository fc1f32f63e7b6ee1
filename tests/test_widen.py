"""training.widen: a U-Net made wider computes the map it computed before (Net2Net), and the CLI keeps the record."""

from __future__ import annotations

import hashlib

import pytest
import torch

from napari_sff.models import load_checkpoint, save_checkpoint
from napari_sff.models.unet import SFFUNet, UNetConfig
from training import widen


def _random_unet(base: int = 8, depth: int = 3) -> SFFUNet:
    torch.manual_seed(0)
    model = SFFUNet(UNetConfig(base_channels=base, depth=depth)).eval()
    with torch.no_grad():  # not the default init: GroupNorm affine and biases must matter too
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    return model


def test_copies_keep_their_groupnorm_group_and_a_factor_that_changes_the_groups_is_refused():
    # 16 channels in 8 groups of 2: each group's pair twice over, group by group (worked out by hand).
    assert widen.channel_map(16, 2)[:8].tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    assert sorted(widen.channel_map(16, 3).tolist()) == sorted(list(range(16)) * 3)
    with pytest.raises(ValueError, match="GroupNorm would use 8 groups instead of 1"):
        widen.channel_map(4, 2)  # 4 channels: 1 group; 8 channels: 8 groups


@pytest.mark.parametrize("depth", [2, 3])
def test_a_widened_unet_computes_the_same_map_and_noise_makes_its_copies_differ(depth):
    model = _random_unet(depth=depth)
    wide = widen.widen_unet(model, 2)
    reference = SFFUNet(UNetConfig(base_channels=16, depth=depth))  # the architecture, built independently
    assert {k: v.shape for k, v in wide.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    x = torch.randn(2, 1, 36, 44)
    with torch.no_grad():
        original = model(x)
        assert original.abs().mean() > 0.1  # a map worth comparing
        torch.testing.assert_close(wide(x), original, atol=1e-5, rtol=1e-4)
        noisy = widen.widen_unet(model, 2, noise=0.01, seed=1)
        difference = (noisy(x) - original).abs().max()
    assert 0 < difference < 0.1 * original.abs().max()
    first = noisy.encoders[0][0].weight  # channels 0 and 2 copy channel 0 (map above): no longer equal
    assert not torch.equal(first[0], first[2])
    torch.testing.assert_close(first[0], model.encoders[0][0].weight[0])  # the first copy is kept as it was


def test_the_cli_writes_a_loadable_wider_checkpoint_that_records_its_source(tmp_path, capsys):
    source = tmp_path / "unet.safetensors"
    save_checkpoint(_random_unet(), source, metadata={"input_spacing_mm": [1.0, 2.0],
                                                     "feature_statistics": {"threshold": 1.5}})
    out = tmp_path / "wide.safetensors"
    assert widen.main([str(source), str(out), "--factor", "2", "--noise", "0"]) == 0
    model, header = load_checkpoint(out, expected_arch="unet")
    assert model.config.base_channels == 16 and header["config"]["depth"] == 3
    record = header["metadata"]["widened_from"]
    assert record["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest() and record["factor"] == 2
    assert header["metadata"]["input_spacing_mm"] == [1.0, 2.0]  # what predict checks scans against
    assert "feature_statistics" not in header["metadata"]  # the bottleneck changed: training stamps new ones
    printed = capsys.readouterr().out
    assert "base 8) ->" in printed and "base 16, noise 0.0)" in printed
    with pytest.raises(SystemExit, match="must not replace its source"):
        widen.main([str(source), str(source)])
