"""torchvision .pth -> Flax v1.5 variant, against torchvision's own forward pass."""

import command_line
import jax
import numpy as np
import pytest
import torch
import torchvision
from flax import nnx

from converters import torch_pth as torch_pth_cli
from jaxtransfer.models import pretrained
from jaxtransfer.models.formats import torch_pth
from jaxtransfer.models.resnet import STUDY_TAPS


def _randomized_resnet50(num_classes=1000, seed=0):
    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.uniform_(0.7, 1.3, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                assert module.running_var.shape == (c,)
        model.fc.weight.mul_(0.05)
    return model.eval()


def _torch_taps(model, images_nhwc):
    x = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(x)))
        taps = {"conv1_relu": x}
        x = model.maxpool(x)
        for i, name in enumerate(STUDY_TAPS[1:]):
            x = getattr(model, f"layer{i + 1}")(x)
            taps[name] = x
        taps["pooled"] = torch.flatten(model.avgpool(x), 1)
        logits = model.fc(taps["pooled"])
    out = {k: v.numpy() for k, v in taps.items()}
    out = {k: v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for k, v in out.items()}
    return out, logits.numpy()


def _assert_close(actual, reference, name):
    bound = 1e-4 * np.abs(reference).max()
    error = np.abs(np.asarray(actual) - reference).max()
    assert error <= bound, f"{name}: max error {error:.3g} > {bound:.3g}"


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_fine_tuned_state_dict_matches_torchvision(size, tmp_path):
    model = _randomized_resnet50(num_classes=3, seed=1)
    path = tmp_path / "resnet50.pth"
    torch.save(model.state_dict(), path)
    converted, metadata = torch_pth.convert(path)
    assert metadata["variant"] == "torchvision" and metadata["preprocessing"] == "torch"
    assert metadata["num_classes"] == 3

    images = np.random.default_rng(0).normal(0, 1, (2, *size, 3)).astype(np.float32)
    reference, reference_logits = _torch_taps(model, images)
    graphdef, state = nnx.split(converted)
    logits, acts = jax.jit(
        lambda s, x: nnx.merge(graphdef, s)(x, taps=list(reference))
    )(state, images)
    for name, value in reference.items():
        assert acts[name].shape == value.shape, name
        _assert_close(acts[name], value, f"{size} {name}")
    _assert_close(logits, reference_logits, "logits")


def test_imagenet_fc_dropped_unless_kept_and_dataparallel_prefix(tmp_path):
    model = _randomized_resnet50(seed=2)
    path = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    converted, metadata = torch_pth.convert(path)
    assert converted.head is None and "dropped" in metadata["notes"][0]
    kept, metadata = torch_pth.convert(path, keep_top=True)
    assert metadata["num_classes"] == 1000
    np.testing.assert_array_equal(
        kept.head.kernel.get_value(), model.fc.weight.detach().numpy().T
    )


def test_checkpoint_round_trip(tmp_path):
    model = _randomized_resnet50(num_classes=2, seed=3)
    path = tmp_path / "m.pth"
    torch.save(model.state_dict(), path)
    assert (
        torch_pth_cli.main(["--input", str(path), "--output", str(tmp_path / "ck")])
        == 0
    )
    restored, metadata = pretrained.load(tmp_path / "ck")
    assert metadata["source_format"] == "torch_pth"
    np.testing.assert_array_equal(
        restored.conv3_block1.conv2.kernel.get_value(),
        model.layer2[0].conv2.weight.detach().numpy().transpose(2, 3, 1, 0),
    )


def _cli_fails(path, tmp_path, match, capsys):
    out = tmp_path / "out"
    err = command_line.fails(
        torch_pth_cli.main, ["--input", path, "--output", out], capsys
    )
    assert match in err, err
    assert not out.exists()


@pytest.mark.bad_input
def test_resnet18_is_rejected(tmp_path, capsys):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    _cli_fails(path, tmp_path, "shape mismatch at 'layer1.0.conv1.weight'", capsys)


@pytest.mark.bad_input
def test_shape_mismatch_names_key_and_shapes(tmp_path, capsys):
    model = _randomized_resnet50()
    model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    path = tmp_path / "grey.pth"
    torch.save(model.state_dict(), path)
    _cli_fails(path, tmp_path, "shape mismatch at 'conv1.weight'", capsys)
    with pytest.raises(ValueError, match=r"\(7, 7, 3, 64\).*\(7, 7, 1, 64\)"):
        torch_pth.convert(path)


@pytest.mark.bad_input
def test_missing_keys_are_named(tmp_path, capsys):
    state = _randomized_resnet50().state_dict()
    del state["layer4.2.bn3.running_var"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    _cli_fails(
        path, tmp_path, "missing 'layer4.2.bn3.running_var' (expected shape", capsys
    )


@pytest.mark.bad_input
def test_not_a_state_dict_and_corrupt_file(tmp_path, capsys):
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    _cli_fails(listing, tmp_path, "expected a state dict", capsys)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00" * 100)
    _cli_fails(
        corrupt,
        tmp_path,
        "corrupt.pth is not a readable torch state dict: Unsupported operand 0",
        capsys,
    )
    _cli_fails(tmp_path / "missing.pth", tmp_path, "no such file", capsys)
    whole_model = tmp_path / "model.pth"
    torch.save(torchvision.models.resnet50(), whole_model)
    _cli_fails(
        whole_model,
        tmp_path,
        "not a plain state dict of tensors (it holds a torchvision.models.resnet."
        "ResNet); the converter reads tensors only and never unpickles Python "
        "objects. Save the weights with torch.save(model.state_dict(), path).",
        capsys,
    )
    for path in (corrupt, whole_model):  # not torch's advice to load it unsafely
        with pytest.raises(ValueError) as error:
            torch_pth.convert(path)
        assert "weights_only" not in str(error.value)
