"""Reliability run: load, faults and hostile input, written to RELIABILITY.md.

    python -m bench.reliability --sessions 20 --rounds 3 [--fuzz 3000] [--no-load]

Every row says what was tried, how many times, what happened and what was lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from core.images.preprocess import ALLOWED_FORMATS, FORMAT_NAMES, ImageInputError, frame_and_fit, open_image, to_native
from core.images.upload import read_upload
from core.models.card import ModelCard
from core.models.registry import REGISTRY
from core.prediction.service import load_served

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from image_cases import HEIC_GARMENT, bad_cases, encode, garment_photo, good_cases  # noqa: E402

log = logging.getLogger("bench.reliability")


def fuzz(n: int, seed: int = 0) -> dict:
    """Random and mutated bytes through the upload reader: only friendly refusals allowed."""
    rng = random.Random(seed)
    formats = [f for f in ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "AVIF") if f in ALLOWED_FORMATS]
    seeds = {f: encode(garment_photo(120, 160), f) for f in formats}
    if "HEIF" in ALLOWED_FORMATS:  # libheif parses uploads too: mutate a real HEIC file
        seeds["HEIC"] = HEIC_GARMENT.read_bytes()
    ok = refused = crashed = 0
    worst = 0.0
    for k in range(n):
        if k % 3 == 0:
            data = rng.randbytes(rng.randint(0, 4096))
        else:
            data = bytearray(rng.choice(list(seeds.values())))
            for _ in range(rng.randint(1, 16)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[: rng.randint(1, len(data))])
        t = time.perf_counter()
        try:  # the reader itself: the app's catch-all behind it would turn any crash into a message
            frame_and_fit(open_image(data).image)  # decoding, the framing step and the canvas
        except ImageInputError:
            refused += 1
        except Exception:  # noqa: BLE001 - counting, not hiding
            crashed += 1
            continue
        else:
            ok += 1
        worst = max(worst, time.perf_counter() - t)
    return {
        "n": n,
        "seeds": list(seeds),
        "decoded": ok,
        "refused_with_message": refused,
        "exceptions": crashed,
        "worst_s": worst,
    }


def faults() -> list[dict]:
    """Each weights/card fault on a copy of weights/: that model disabled, the others fine."""
    kinds = [
        "weights missing",
        "weights truncated",
        "weights bit flipped",
        "card missing",
        "card malformed",
        "card sha256 wrong",
    ]
    out = []
    for kind in kinds:
        for name in REGISTRY:
            tmp = Path(tempfile.mkdtemp(prefix="dresscode-fault-"))
            try:
                for spec in REGISTRY.values():
                    shutil.copy(spec.weights_file, tmp / spec.weights_file.name)
                    shutil.copy(spec.card_file, tmp / spec.card_file.name)
                w, c = tmp / f"{name}.safetensors", tmp / f"{name}.json"
                if kind == "weights missing":
                    w.unlink()
                elif kind == "weights truncated":
                    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
                elif kind == "weights bit flipped":
                    b = bytearray(w.read_bytes())
                    b[len(b) // 3] ^= 0x10
                    w.write_bytes(bytes(b))
                elif kind == "card missing":
                    c.unlink()
                elif kind == "card malformed":
                    c.write_text('{"name": "x", "classes": ')
                else:
                    card = ModelCard.load(c)
                    card.weights["sha256"] = "f" * 64
                    card.save(c)
                results = {n: load_served(n, tmp) for n in REGISTRY}
                out.append(
                    {
                        "fault": kind,
                        "model": name,
                        "disabled_with_message": (not results[name].ok) and bool(results[name].error),
                        "others_ok": all(r.ok for n, r in results.items() if n != name),
                        "message": results[name].error,
                    }
                )
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return out


def hostile_uploads(rounds: int) -> dict:
    """The hostile/broken files of the app tests, each refused with its message; good ones classified."""
    bad, good = bad_cases(), good_cases()
    refused = classified = wrong = 0
    for _ in range(rounds):
        for _name, (data, fragment) in bad.items():
            res = read_upload("x", data)
            if res.error and fragment.lower() in res.error.lower():
                refused += 1
            else:
                wrong += 1
        for _name, (data, _) in good.items():
            res = read_upload("x", data)
            classified += res.error is None
            wrong += res.error is not None
    return {
        "files": rounds * (len(bad) + len(good)),
        "refused_with_message": refused,
        "decoded": classified,
        "unexpected": wrong,
        "kinds": sorted(bad) + sorted(good),
    }


def interrupted_and_threads(n_interrupts: int, n_threads: int) -> dict:
    """Explanations killed mid-forward never leave the lock held; threads on one model get their own results."""
    ex = load_served("resnet50").served
    imgs = [np.asarray(to_native(garment_photo(colour=(i * 30 % 255, 40, 200 - i * 20)))) for i in range(n_threads)]
    layer = ex.model.get_submodule("backbone.layer2")

    class Killed(Exception):
        pass

    def boom(module, args, output):  # noqa: ANN001, ANN202
        raise Killed

    lock_free = 0
    for _ in range(n_interrupts):
        h = layer.register_forward_hook(boom)
        try:
            ex.explain(imgs[0], ex.layer_paths)
        except Killed:
            pass
        finally:
            h.remove()
        lock_free += not ex.lock.locked()
    hooks_left = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in ex.model.modules())
    expected = [ex.explain(im, ex.layer_paths) for im in imgs]
    got: dict[int, object] = {}

    def work(i: int) -> None:
        got[i] = ex.explain(imgs[i], ex.layer_paths)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    same = sum(
        1
        for i in range(n_threads)
        if i in got
        and all(np.allclose(got[i].maps[p], expected[i].maps[p]) for p in ex.layer_paths)
        and np.allclose(got[i].probs, expected[i].probs)
    )
    return {
        "interrupts": n_interrupts,
        "lock_free_after": lock_free,
        "hooks_left": hooks_left,
        "threads": n_threads,
        "threads_with_own_correct_result": same,
    }


def batches_while_compiling(n_threads: int, per_thread: int = 40, seed: int = 0) -> dict:
    """Threads classify their own batches on one model's fast path (the multi-photo table) from
    before its backbone starts compiling in the background until after it serves: every call
    must give each photo its fp32 class."""
    ex = load_served("resnet50").served
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_threads):
        shirts = [garment_photo(120, 160, tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(per_thread)]
        batches.append(np.stack([np.asarray(to_native(im)) for im in shirts]))
    expected = [ex.predict(b, batch_size=64).argmax(1) for b in batches]  # plain fp32
    calls: list[dict] = []

    def work(i: int) -> None:
        rounds_after = 0
        while rounds_after < 2:  # until two calls after compiling has ended
            ready = ex.fast_predictor.compile_state in ("ready", "failed", "off")
            try:
                got = ex.predict(batches[i], batch_size=64, fast=True).argmax(1)
                calls.append({"compiled_ready": ready, "mismatches": int((got != expected[i]).sum()), "error": None})
            except Exception as exc:  # counted, never hidden
                calls.append({"compiled_ready": ready, "mismatches": None, "error": repr(exc)[:200]})
                return
            rounds_after += ready

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    fast = ex.fast_predictor
    return {
        "threads": n_threads,
        "photos_per_call": per_thread,
        "calls": len(calls),
        "calls_while_compiling": sum(not c["compiled_ready"] for c in calls),
        "class_mismatches": sum(c["mismatches"] or 0 for c in calls),
        "errors": sum(c["error"] is not None for c in calls),
        "compile_state": fast.compile_state,
        "compile_seconds": fast.compile_seconds,
        "seconds": time.perf_counter() - t0,
    }


def write_markdown(res: dict, command: str) -> str:
    """The RELIABILITY.md text."""
    rows = []
    if "load" in res:
        ld = res["load"]
        rows.append(
            (
                f"{ld['sessions']} concurrent browser sessions × {ld['rounds']} rounds, each uploading its own "
                "photo and reading back both predictions",
                ld["requests"],
                f"errors {ld['errors']}, cross-talk {ld['cross_talk']}, median {ld['median_s']:.1f} s, p95 "
                f"{ld['p95_s']:.1f} s to a rendered prediction; server peak RSS {ld['peak_rss_mb']:.0f} MB, "
                f"growth over rounds {ld['rss_growth_mb']:+.0f} MB (after each: "
                f"{', '.join(f'{x:.0f}' for x in ld['rss_after_round_mb'])} MB); tracebacks in server log "
                f"{ld['tracebacks_in_server_log']}",
                "nothing" if ld["errors"] == 0 and ld["cross_talk"] == 0 else "SEE FAILURES",
            )
        )
    fz = res["fuzz"]
    rows.append(
        (
            f"Random and mutated bytes ({'/'.join(fz.get('seeds', []))} seeds) through the upload reader",
            fz["n"],
            f"decoded {fz['decoded']}, refused with a message {fz['refused_with_message']}, other exceptions "
            f"{fz['exceptions']}, slowest {fz['worst_s'] * 1000:.0f} ms",
            "nothing" if fz["exceptions"] == 0 else "SEE EXCEPTIONS",
        )
    )
    hu = res["hostile"]
    rows.append(
        (
            "Hostile and unusual uploads: " + ", ".join(hu["kinds"]),
            hu["files"],
            f"refused with the expected message {hu['refused_with_message']}, decoded and classified "
            f"{hu['decoded']}, unexpected {hu['unexpected']}",
            "nothing" if hu["unexpected"] == 0 else "SEE",
        )
    )
    by_kind: dict[str, list] = {}
    for f in res["faults"]:
        by_kind.setdefault(f["fault"], []).append(f)
    for kind, fs in by_kind.items():
        good = sum(f["disabled_with_message"] and f["others_ok"] for f in fs)
        rows.append(
            (
                f"Fault: {kind} (each model in turn)",
                len(fs),
                f"that model disabled with a message and the others working: {good}/{len(fs)} "
                f"(e.g. \u201c{fs[0]['message']}\u201d)",
                "nothing" if good == len(fs) else "SEE",
            )
        )
    it = res["interrupts"]
    rows.append(
        (
            "Explanation killed mid-forward (a session closing or rerunning), then another session",
            it["interrupts"],
            f"lock free afterwards {it['lock_free_after']}/{it['interrupts']}, hooks left {it['hooks_left']}",
            "nothing",
        )
    )
    rows.append(
        (
            "Threads explaining different photos on one shared ResNet50",
            it["threads"],
            f"each got its own correct result: {it['threads_with_own_correct_result']}/{it['threads']}",
            "nothing",
        )
    )
    bt = res.get("batches")
    if bt is not None:
        rows.append(
            (
                f"Threads classifying their own batches of {bt['photos_per_call']} photos on one shared ResNet50's "
                "fast path (the multi-photo table), from before its backbone compiles in the background until "
                "after the compiled graph serves",
                bt["calls"],
                f"calls during compilation {bt['calls_while_compiling']}, photos given another class than plain "
                f"fp32 {bt['class_mismatches']}, errors {bt['errors']}; compilation {bt['compile_state']}"
                + (f" after {bt['compile_seconds']:.0f} s" if bt["compile_seconds"] else ""),
                "nothing" if bt["class_mismatches"] == 0 and bt["errors"] == 0 else "SEE",
            )
        )
    lines = [
        "# Reliability",
        "",
        f"Run on {res['date']} with `{command}` (2 CPU cores). Server security settings and the "
        "image-format allow list are checked by `tests/test_reliability.py` and `tests/test_browser.py`: upload "
        'limit 25 MB enforced by the server and by `core`, error details hidden (`showErrorDetails = "none"`), '
        "XSRF protection on, CORS at its safe default, static file serving off (repository files are not "
        f"served), and images opened only as {FORMAT_NAMES} (never EPS, PSD, FITS, ICO …).",
        "",
        "| what was tried | times | what happened | what was lost |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.reliability", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=20, help="concurrent browser sessions (20)")
    ap.add_argument("--rounds", type=int, default=3, help="times the sessions are run (3)")
    ap.add_argument("--fuzz", type=int, default=3000, help="mutated images fed to the image reader (3000)")
    ap.add_argument("--no-load", action="store_true", help="skip the browser load test")
    ap.add_argument("--out", type=Path, default=ROOT / "RELIABILITY.md", help="report to write (RELIABILITY.md)")
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(2)
    res: dict = {"date": date.today().isoformat()}
    log.info("fuzz")
    res["fuzz"] = fuzz(args.fuzz)
    log.info("hostile uploads")
    res["hostile"] = hostile_uploads(5)
    log.info("faults")
    res["faults"] = faults()
    log.info("interrupts and threads")
    res["interrupts"] = interrupted_and_threads(20, 8)
    log.info("batches while the fast path compiles")
    res["batches"] = batches_while_compiling(4)
    if not args.no_load:
        from bench.load import run_load

        log.info("load: %d sessions × %d rounds", args.sessions, args.rounds)
        res["load"] = run_load(args.sessions, args.rounds)
    command = "python -m bench.reliability " + " ".join(argv if argv is not None else sys.argv[1:])
    text = write_markdown(res, command.strip())
    args.out.write_text(text)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
