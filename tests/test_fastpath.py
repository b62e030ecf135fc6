"""core.prediction.fastpath: BatchNorm folding is exact, near ties are re-run in fp32, the class never changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_gradcam import images
from torch import nn

from core.models.networks import DressCodeNet, Preprocessing, dense_head
from core.models.registry import get_spec
from core.prediction.fastpath import FP32_TIE_MARGIN, FastBatchPredictor, fold_batchnorm
from core.prediction.inference import apply_decision_rule, predict_logits
from core.prediction.served import ServedModel


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (fresh ones are identities)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def resnet() -> DressCodeNet:
    torch.manual_seed(0)
    return randomise_batchnorm(get_spec("resnet50").builder(3, "none"))


def test_fold_resnet50_is_exact(resnet: DressCodeNet) -> None:
    folded, fused = fold_batchnorm(resnet)
    assert fused == 53  # stem + 16 bottlenecks × 3 + 4 downsample branches
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in resnet.modules())  # the original is untouched
    x = torch.rand(3, 3, 80, 60)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), resnet(x), rtol=1e-4, atol=1e-4)


def test_fold_effnet_is_exact() -> None:
    torch.manual_seed(0)
    model = get_spec("effnet_lite0").builder(3, "imagenet").eval()
    folded, fused = fold_batchnorm(model)
    assert fused == 49  # stem + first block × 2 + 15 blocks × 3 + conv head
    x = torch.rand(2, 3, 80, 60)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


class BnFirst(nn.Module):
    """Registers conv before bn but applies bn first: registration order lies about the data flow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_folding_that_changes_outputs_is_refused() -> None:
    torch.manual_seed(0)
    model = DressCodeNet(Preprocessing(), randomise_batchnorm(BnFirst()), dense_head(3, 3, hidden=8)).eval()
    assert fold_batchnorm(model)[1] == 1  # the naive fold happens …
    fast = FastBatchPredictor(model)
    assert fast.fused == 0  # … but the numeric check rejects it
    imgs = images(6)
    z32 = predict_logits(model, imgs)
    np.testing.assert_allclose(fast.fast_logits(imgs), z32, rtol=0.05, atol=0.05)


def test_no_images_give_no_logits_of_the_right_width() -> None:
    model = DressCodeNet(Preprocessing(), BnFirst(), dense_head(3, 3, hidden=8)).eval()
    none = images(1)[:0]
    for z in (predict_logits(model, none), FastBatchPredictor(model).fast_logits(none)):
        assert z.shape == (0, 3)  # so the rule and argmax apply: no (0, 0) broadcast error
        assert apply_decision_rule(z, [0.0, 1.0, 2.0]).argmax(1).shape == (0,)


def test_same_class_as_fp32_and_near_ties_rechecked(resnet: DressCodeNet) -> None:
    imgs = images(12, seed=3)
    z32 = predict_logits(resnet, imgs)
    zf = FastBatchPredictor(resnet).fast_logits(imgs)
    # an untrained ResNet50 with random statistics is far less tame in bf16 than the shipped one
    # (bench measures that one); the guarantee holds whenever the margin exceeds twice the error
    fast = FastBatchPredictor(resnet, margin=2.5 * float(np.abs(zf - z32).max()))
    # a bias that puts rows right at ties: the fast path must still give fp32's classes
    bias = [0.0, float(np.median(z32[:, 0] - z32[:, 1])), float(np.median(z32[:, 0] - z32[:, 2]))]
    z = fast.logits(imgs, bias)
    expected = apply_decision_rule(z32, bias).argmax(1)
    np.testing.assert_array_equal(apply_decision_rule(z, bias).argmax(1), expected)
    adjusted = np.sort(zf + np.asarray(bias, dtype=np.float32), axis=1)
    close = adjusted[:, -1] - adjusted[:, -2] < fast.margin
    assert fast.rechecked == int(close.sum()) > 0
    np.testing.assert_allclose(z[close], z32[close], rtol=1e-5, atol=1e-4)  # re-run rows carry fp32 logits


def test_margin_extremes(resnet: DressCodeNet) -> None:
    imgs = images(5, seed=1)
    z32 = predict_logits(resnet, imgs)
    everything = FastBatchPredictor(resnet, margin=float("inf"))
    np.testing.assert_allclose(everything.logits(imgs), z32, rtol=1e-5, atol=1e-4)
    assert everything.rechecked == 5
    nothing = FastBatchPredictor(resnet, margin=0.0)
    nothing.logits(imgs)
    assert nothing.rechecked == 0
    assert nothing.logits(imgs[:0]).shape[0] == 0


def test_served_fast_predict_matches_and_leaves_model_alone() -> None:
    torch.manual_seed(0)
    model = get_spec("effnet_lite0").builder(3, "imagenet").eval()  # ImageNet backbone: tame in bf16
    for p in model.parameters():
        p.requires_grad_(False)
    ex = ServedModel(model, get_spec("effnet_lite0"), ["a", "b", "c"], logit_bias=[0.0, -0.05, 0.05])
    imgs = images(8, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    slow, quick = ex.predict(imgs), ex.predict(imgs, fast=True)
    np.testing.assert_array_equal(quick.argmax(1), slow.argmax(1))
    np.testing.assert_allclose(quick, slow, atol=0.02)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert ex.explain(imgs[0]).predicted == int(slow[0].argmax())


@pytest.mark.parametrize("hardware", [True, False])
def test_the_batch_copy_is_bfloat16_only_where_the_cpu_runs_it(monkeypatch: pytest.MonkeyPatch, hardware: bool) -> None:
    """On an AVX2-only CPU emulated bfloat16 is slower than the fp32 model: the copy stays fp32 (folded), with
    the fp32 margin; either way its classes are the fp32 path's."""
    import core.prediction.served as served

    monkeypatch.setattr(served, "bf16_is_fast", lambda: hardware)
    spec = get_spec("resnet50")
    ex = ServedModel(small_net(3), spec, ["a", "b", "c"])
    fast = ex.fast_predictor
    assert fast.dtype == (torch.bfloat16 if hardware else torch.float32)
    assert fast.margin == (spec.tie_margin if hardware else FP32_TIE_MARGIN)
    imgs = images(6, seed=4)
    np.testing.assert_array_equal(ex.predict(imgs, fast=True).argmax(1), ex.predict(imgs).argmax(1))
    if not hardware:  # folding is exact algebra: the copy's own logits (no re-check) agree far inside the margin
        np.testing.assert_allclose(fast.fast_logits(imgs), ex.logits(imgs), atol=FP32_TIE_MARGIN / 10)
        assert isinstance(fast.backbone, torch.jit.ScriptModule)  # the traced fp32 graph serves


def test_the_neighbour_index_is_keyed_by_the_batch_copy_s_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The index is embedded by the batch copy: an index made in bfloat16 is not served to an fp32 copy."""
    import core.prediction.served as served
    from core.data.catalog import Catalog
    from core.explanation.neighbours import index_path

    ex = ServedModel(small_net(3), get_spec("resnet50"), ["a", "b", "c"])
    catalog = Catalog(Path("."), ("a",), "usage", [1, 2], [0, 0], {})
    paths = {}
    for hardware in (True, False):
        monkeypatch.setattr(served, "bf16_is_fast", lambda hardware=hardware: hardware)
        paths[hardware] = index_path(ex, catalog, [1, 2])
        assert ex.fast_dtype == (torch.bfloat16 if hardware else torch.float32)
    assert paths[True] != paths[False]


def small_net(seed: int = 0) -> DressCodeNet:
    """A small conv net with BatchNorms, ReLUs and a residual addition: what Inductor fuses."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.bn(self.conv(x)) + x)

    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Block(), Block())
    return DressCodeNet(Preprocessing(), randomise_batchnorm(backbone, seed), dense_head(8, 3, hidden=16)).eval()


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="torch.compile needs a C++ compiler"
)
def test_compiled_tier_serves_after_background_compile_with_fp32_classes() -> None:
    model = small_net()
    fast = FastBatchPredictor(model, margin=0.1, compile_backbone=True, compiled_batch=8)
    assert fast.compile_state in {"compiling", "ready"}  # the constructor does not wait
    assert fast.wait_compiled(timeout=600), fast.compile_state
    assert fast.compile_state == "ready" and fast.compile_seconds > 0
    imgs = images(13, seed=4)  # chunks of 8 and 5: the 5 are padded to the compiled shape
    assert fast._backbone_of(8)[0] is fast.compiled and fast._backbone_of(5) == (fast.compiled, 8)
    assert fast._backbone_of(3)[0] is fast.backbone  # too small to be worth padding
    z32 = predict_logits(model, imgs)
    np.testing.assert_allclose(fast.fast_logits(imgs, batch_size=8), z32, atol=0.05)
    z = fast.logits(imgs, batch_size=8)
    np.testing.assert_array_equal(z.argmax(1), z32.argmax(1))
    traced = FastBatchPredictor(model, margin=0.1, compiled_batch=8)
    assert traced.compile_state == "off" and traced.wait_compiled(timeout=0) is False
    # padding rows never leak into real rows: the compiled and traced graphs agree row by row
    np.testing.assert_allclose(fast.fast_logits(imgs[:5], batch_size=8), traced.fast_logits(imgs[:5]), atol=0.05)
    # another shape would need a recompile (seconds of stall): the compiled graph is dropped instead
    other = torch.zeros(3, 3, 80, 60, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert fast._run_compiled(fast.compiled, other) is None
    assert fast.compiled is None and fast.compile_state == "failed"
    np.testing.assert_array_equal(fast.logits(imgs, batch_size=8).argmax(1), z32.argmax(1))


def test_failed_compile_leaves_the_traced_graph_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    model = small_net(1)
    fast = FastBatchPredictor(model, margin=0.1, compile_backbone=True, compiled_batch=8)
    assert fast.wait_compiled(timeout=60) is False
    assert fast.compile_state == "failed" and fast.compiled is None
    imgs = images(9, seed=5)
    np.testing.assert_array_equal(fast.logits(imgs, batch_size=8).argmax(1), predict_logits(model, imgs).argmax(1))
