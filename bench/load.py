"""Load test: N concurrent real Streamlit sessions against ``streamlit run`` on 127.0.0.1.

    python -m bench.load --sessions 20 --rounds 3 --json bench/load.json

Each session is its own Chromium browser context (its own websocket session), uploads its
own photo and reads back both models' predictions and confidences, which are compared with
what ``core`` computes for that photo alone: any mismatch counts as cross-talk. The server's
resident memory is read from /proc after every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.load")
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/lib/chromium/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DEFAULT_MODELS = ("baseline", "resnet50")


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate a server from :func:`start_server`; kill it if it has not gone after 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_server(port: int, log_path: Path) -> subprocess.Popen:
    """``streamlit run streamlit_app.py`` headless on 127.0.0.1:port; waits for health."""
    fh = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app.py",
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
        ],
        cwd=ROOT,
        stdout=fh,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    cur = peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cur, peak


def session_photos(n: int, folder: Path) -> list[tuple[Path, list[str]]]:
    """``n`` distinct photos and, per photo, the expected 'class|confidence' of both models."""
    from core.config import find_default_data_dir
    from core.data.catalog import load_styles
    from core.images.upload import read_upload
    from core.prediction.service import load_served

    root = find_default_data_dir()
    files: list[tuple[str, bytes]] = []
    if root is not None:
        cat = load_styles(root)
        rng = np.random.default_rng(7)
        by_class = {k: [i for i, lab in zip(cat.ids, cat.labels) if lab == k] for k in range(len(cat.classes))}
        for j in range(n):
            pool = by_class[j % len(by_class)]
            pid = int(pool[rng.integers(len(pool))])
            files.append((f"s{j:02d}_{pid}.jpg", cat.image_path(pid).read_bytes()))
    else:
        from tests.image_cases import encode, garment_photo

        rng = np.random.default_rng(7)
        for j in range(n):
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            files.append((f"s{j:02d}.png", encode(garment_photo(colour=colour), "PNG")))
    models = {m: load_served(m) for m in DEFAULT_MODELS}
    out = []
    for name, data in files:
        path = folder / name
        path.write_bytes(data)
        native = read_upload(name, data).native
        expected = []
        for m in DEFAULT_MODELS:
            exp = models[m].served.explain(native)
            expected.append(f"{models[m].card.classes[exp.predicted]}|{exp.probs[exp.predicted]:.1%}")
        out.append((path, expected))
    return out


async def one_session(browser, url: str, photo: Path, expected: list[str], timeout_s: float) -> dict:  # noqa: ANN001
    """Open the app, upload one photo, read both predictions; returns timing and correctness."""
    ctx = await browser.new_context(viewport={"width": 1300, "height": 1400})
    page = await ctx.new_page()
    page.set_default_timeout(timeout_s * 1000)
    res: dict = {"photo": photo.name, "error": None, "cross_talk": False}
    try:
        await page.goto(url, wait_until="domcontentloaded")
        drop = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        await drop.wait_for(state="attached")
        t0 = time.perf_counter()
        await drop.set_input_files(str(photo))
        metrics = page.locator('[data-testid="stMetric"]')
        await metrics.nth(1).wait_for()
        res["seconds"] = time.perf_counter() - t0
        seen = []
        for k in range(2):
            lines = [t for t in (await metrics.nth(k).inner_text()).split("\n") if t.strip()]
            seen.append(f"{lines[1]}|{lines[2].split()[0]}")
        res["seen"] = seen
        chips = await page.locator('[data-testid="stFileChipName"]').all_inner_texts()
        res["cross_talk"] = seen != expected or chips != [photo.name]
        if res["cross_talk"]:
            res["expected"] = expected
            res["chips"] = chips
    except Exception as exc:  # timeouts, crashes: counted as errors
        res["error"] = f"{exc.__class__.__name__}: {str(exc)[:200]}"
    finally:
        await ctx.close()
    return res


async def run_rounds(url: str, photos: list, rounds: int, server_pid: int, timeout_s: float) -> dict:
    """``rounds`` × all sessions at once; RSS after each round."""
    from playwright.async_api import async_playwright

    results, rss_after = [], []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for r in range(rounds):
            t = time.perf_counter()
            batch = await asyncio.gather(*(one_session(browser, url, ph, ex, timeout_s) for ph, ex in photos))
            for b in batch:
                b["round"] = r + 1
            results += batch
            rss_after.append(rss_mb(server_pid)[0])
            log.info(
                "round %d: %d sessions in %.1fs, server RSS %.0f MB",
                r + 1,
                len(batch),
                time.perf_counter() - t,
                rss_after[-1],
            )
        await browser.close()
    return {"results": results, "rss_after_round_mb": rss_after}


def run_load(sessions: int, rounds: int = 3, timeout_s: float = 180.0) -> dict:
    """Start the app, drive the sessions, stop the app; returns the summary dict."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian chromium is needed: apt-get install -y chromium chromium-driver")
    tmp = Path(tempfile.mkdtemp(prefix="dresscode-load-"))
    try:
        photos = session_photos(sessions, tmp)
        port = free_port()
        proc = start_server(port, tmp / "server.log")
        try:
            out = asyncio.run(run_rounds(f"http://127.0.0.1:{port}", photos, rounds, proc.pid, timeout_s))
            peak = rss_mb(proc.pid)[1]
        finally:
            stop_server(proc)
        server_log = (tmp / "server.log").read_text()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = out["results"]
    times = sorted(r["seconds"] for r in res if r.get("seconds") is not None and not r["error"])
    rss = out["rss_after_round_mb"]
    return {
        "sessions": sessions,
        "rounds": rounds,
        "requests": len(res),
        "errors": sum(1 for r in res if r["error"]),
        "cross_talk": sum(1 for r in res if r["cross_talk"] and not r["error"]),
        "median_s": statistics.median(times) if times else None,
        "p95_s": float(np.percentile(times, 95)) if times else None,
        "peak_rss_mb": peak,
        "rss_after_round_mb": rss,
        "rss_growth_mb": (rss[-1] - rss[0]) if len(rss) > 1 else 0.0,
        "tracebacks_in_server_log": server_log.count("Traceback"),
        "failures": [r for r in res if r["error"] or r["cross_talk"]][:10],
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: print and write the summary."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=20, help="concurrent browser sessions (20)")
    ap.add_argument("--rounds", type=int, default=3, help="times the sessions are run (3)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per session")
    ap.add_argument("--json", type=Path, required=True, help="write the measurements here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    summary = run_load(args.sessions, args.rounds, args.timeout)
    keys = [
        "sessions",
        "rounds",
        "requests",
        "errors",
        "cross_talk",
        "median_s",
        "p95_s",
        "peak_rss_mb",
        "rss_growth_mb",
        "tracebacks_in_server_log",
    ]
    print("| metric | value |\n|---|---|")
    for k in keys:
        v = summary[k]
        print(f"| {k} | {v:.2f} |" if isinstance(v, float) else f"| {k} | {v} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1))
    return 0 if summary["errors"] == 0 and summary["cross_talk"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
