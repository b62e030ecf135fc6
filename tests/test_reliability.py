"""Faults and hostile input: fuzzed image bytes, refused formats, broken weights and cards,
locks released after an interrupted explanation, and the server's security settings."""

from __future__ import annotations

import io
import resource
import shutil
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_cases import encode, garment_photo
from PIL import Image

from core.images.preprocess import ImageInputError, open_image, to_native
from core.images.upload import read_upload
from core.models.card import ModelCard, WeightsError, load_model
from core.models.registry import REGISTRY
from core.prediction.served import ServedModel
from core.prediction.service import load_served

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [encode(garment_photo(120, 160), fmt) for fmt in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")]


def _decode_or_refuse(data: bytes) -> None:
    t = time.perf_counter()
    try:
        img = open_image(data)
        assert img.image.mode == "RGB"
        assert to_native(img.image).size == (60, 80)
    except ImageInputError as exc:
        assert str(exc)  # a message for the user
    assert time.perf_counter() - t < 5.0, "decoding took unbounded time"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes_only_raise_input_error(data: bytes) -> None:
    _decode_or_refuse(data)


@pytest.mark.filterwarnings("ignore:.*:UserWarning:PIL")  # Pillow's notes on corrupt metadata are expected here
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.integers(0, 10**6),
)
def test_fuzz_mutated_images_only_raise_input_error(seed: bytes, flips: list, cut: int) -> None:
    data = bytearray(seed)
    for pos, val in flips:
        data[pos % len(data)] = val
    data = bytes(data[: max(1, cut % (len(data) + 1))])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _decode_or_refuse(data)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 512, "decoding a mutated file allocated unbounded memory"


@pytest.mark.parametrize(
    "name,data",
    [
        ("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        (
            "psd",
            b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03" + b"\x00\x00\x00\x10" * 2 + b"\x00\x08\x00\x03" + b"\x00" * 64,
        ),
        ("fits", b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8" + b" " * 2800),
        ("ico", encode(Image.new("RGB", (16, 16)), "ICO")),
        ("pcx", encode(Image.new("RGB", (16, 16)), "PCX")),
    ],
)
def test_formats_outside_the_allow_list_are_refused(name: str, data: bytes) -> None:
    with pytest.raises(ImageInputError, match="supported format"):
        open_image(data)


def _copy_weights(dst: Path) -> None:
    for spec in REGISTRY.values():
        for f in (spec.weights_file, spec.card_file):
            if f.is_file():
                shutil.copy(f, dst / f.name)


needs_weights = pytest.mark.skipif(
    not all(s.weights_file.is_file() for s in REGISTRY.values()), reason="shipped weights are not present"
)


@needs_weights
@pytest.mark.parametrize(
    "fault", ["missing", "truncated", "bitflip", "card_missing", "card_malformed", "card_wrong_sha"]
)
def test_weight_and_card_faults_disable_only_that_model(tmp_path: Path, fault: str) -> None:
    _copy_weights(tmp_path)
    w, c = tmp_path / "baseline.safetensors", tmp_path / "baseline.json"
    if fault == "missing":
        w.unlink()
    elif fault == "truncated":
        w.write_bytes(w.read_bytes()[:1000])
    elif fault == "bitflip":
        b = bytearray(w.read_bytes())
        b[len(b) // 2] ^= 0xFF
        w.write_bytes(bytes(b))
    elif fault == "card_missing":
        c.unlink()
    elif fault == "card_malformed":
        c.write_text("{ not json")
    elif fault == "card_wrong_sha":
        card = ModelCard.load(c)
        card.weights["sha256"] = "0" * 64
        card.save(c)
    loaded = load_served("baseline", tmp_path)
    assert not loaded.ok and loaded.error and "Traceback" not in loaded.error
    with pytest.raises(WeightsError):
        load_model("baseline", tmp_path)
    assert load_served("effnet_lite0", tmp_path).ok  # the others still work


@needs_weights
def test_tampered_weights_are_never_deserialised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_weights(tmp_path)
    b = bytearray((tmp_path / "baseline.safetensors").read_bytes())
    b[-1] ^= 0x01
    (tmp_path / "baseline.safetensors").write_bytes(bytes(b))
    calls = []
    import core.models.card

    monkeypatch.setattr(core.models.card, "load_file", lambda *a, **k: calls.append(a))
    with pytest.raises(WeightsError, match="sha256"):
        load_model("baseline", tmp_path)
    assert calls == []


class _Interrupted(Exception):
    pass


def test_interrupted_explanation_releases_the_lock_and_the_next_call_works() -> None:
    spec = REGISTRY["baseline"]
    model = spec.builder(3, "none").eval()
    ex = ServedModel(model, spec, ["Casual", "Formal", "Smart Casual"])
    img = np.asarray(to_native(garment_photo()))
    conv = model.get_submodule("backbone.conv2")

    def boom(module, args, output):  # noqa: ANN001, ANN202 - a session killed mid-forward
        raise _Interrupted

    handle = conv.register_forward_hook(boom)
    with pytest.raises(_Interrupted):
        ex.explain(img, ex.layer_paths)
    handle.remove()
    assert not ex.lock.locked()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    done = threading.Event()

    def other_session() -> None:
        ex.explain(img, ex.layer_paths)
        done.set()

    t = threading.Thread(target=other_session)
    t.start()
    t.join(60)
    assert done.is_set()


def test_server_security_settings() -> None:
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = cfg["server"], cfg["client"]
    assert server["maxUploadSize"] == 25
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True  # the safe default is kept
    assert server.get("enableStaticServing", False) is False
    assert client["showErrorDetails"] == "none"
    from core.images.preprocess import MAX_BYTES

    assert MAX_BYTES == server["maxUploadSize"] * 1024 * 1024


def test_upload_over_the_limit_is_refused_in_core_too() -> None:
    photo = read_upload("big.jpg", encode(garment_photo(), "JPEG") + b"\0" * (26 * 1024 * 1024))
    assert photo.error and "larger than 25 MB" in photo.error


def test_read_upload_never_raises_on_garbage() -> None:
    for data in (b"", b"\x00" * 10, b"GIF89a" + b"\xff" * 30, io.BytesIO(b"x").getvalue()):
        assert read_upload("x", data).error
