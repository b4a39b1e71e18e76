"""Screenshots of real genrl runs in TensorBoard, for the README.

    OMP_NUM_THREADS=1 .venv/bin/python docs/tensorboard_screenshot.py
    .venv/bin/python docs/tensorboard_screenshot.py --runs runs/   # runs you already have

Given no runs (no ``--runs``, or a folder without any) it first trains two short CartPole runs
that differ in ``train.dream_steps`` (about two minutes on one CPU thread), so that the HPARAMS
view compares two runs. It then serves the runs folder with TensorBoard on 127.0.0.1 and
photographs two views with a headless Chromium (Debian: ``apt-get install chromium``):

* ``docs/tensorboard-scalars.png``: TIME SERIES, the real and dream returns against real steps;
* ``docs/tensorboard-hparams.png``: HPARAMS, one row per run, its settings and final metrics.

Each view is loaded in a frame of a small local page that, once TensorBoard has drawn it, does
what a reader would: shows the whole curves and closes the settings pane, or shows the settings
that differ between the runs (and the agent) next to the headline metrics. The page reaches into
the frame, so this Chromium runs with ``--disable-web-security``; it only ever loads these two
pages, from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# Short CartPole runs: the env preset, with budgets small enough for a CPU thread.
RUN = dict(
    seed=0,
    progress=False,
    iterations=4,
    fit_steps=300,
    refit_steps=150,
    eval_episodes=5,
    n_envs=16,
    horizon=200,
    target_return=501,  # above CartPole's best: every run does all its iterations
)
DREAM_STEPS = (2048, 8192)
SCALARS = "^(real/eval_return_mean|dream/eval_return_mean|dream/real_gap)$"
# name: (TensorBoard view, window size)
VIEWS = {
    "tensorboard-scalars.png": (
        f"?forceSVG=true&smoothing=0&tagFilter={urllib.parse.quote(SCALARS)}#timeseries",
        "1400,620",
    ),
    "tensorboard-hparams.png": ("#hparams", "1400,330"),
}
SHOWN_HPARAMS = ["agent"]  # besides those that differ between the runs
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-web-security",  # the page below reaches into TensorBoard's frame (another port)
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--virtual-time-budget=30000",
]
PAGE = """<!doctype html><html><body style="margin:0;overflow:hidden">
<iframe id="tb" src="%(src)s" style="border:0;width:100vw;height:100vh"></iframe>
<script>
const HPARAMS = %(hparams)s, METRICS = %(metrics)s;
function find(root, name) {  // the first element called name, inside shadow roots too
  for (const el of root.querySelectorAll("*")) {
    if (el.localName === name) return el;
    const inner = el.shadowRoot && find(el.shadowRoot, name);
    if (inner) return inner;
  }
  return null;
}
function arrange(doc) {
  if (location.hash !== "#hparams") {  // the whole curves (4 points: no outliers), then no settings
    const close = doc.querySelector('button[aria-label="Close side pane"]');
    const boxes = [...doc.querySelectorAll("mat-checkbox")];
    const outliers = boxes.find((c) => c.textContent.includes("outliers"));
    if (!close || !outliers) return false;
    const box = outliers.querySelector("input");
    if (box.checked) box.click();
    close.click();
    return true;
  }
  const pane = find(doc, "tf-hparams-query-pane");
  if (!pane || !(pane._hparams || []).length || !(pane._metrics || []).length) return false;
  pane._hparams.forEach((h, i) =>
    pane.set(`_hparams.${i}.displayed`, Boolean(h.info.differs) || HPARAMS.includes(h.info.name)));
  pane._metrics.forEach((m, i) => pane.set(`_metrics.${i}.displayed`, METRICS.includes(m.info.name.tag)));
  return true;
}
(function poll() {
  const doc = document.getElementById("tb").contentDocument;
  if (!doc || !doc.body || !arrange(doc)) setTimeout(poll, 200);
})();
</script></body></html>
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, help="a folder of genrl runs; two short ones are trained there if it has none"
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go (default: docs/)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="genrl-tb-") as tmp:
        tmp = Path(tmp)
        runs = args.runs or tmp / "runs"
        if not any(runs.rglob("summary.json")):
            train_runs(runs)
        log = tmp / "tensorboard.txt"
        argv = [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", "127.0.0.1"]
        argv += ["--port", "0", "--load_fast", "false", "--reload_interval", "1"]
        with open(log, "wb") as err:
            tensorboard = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=tmp))
        threading.Thread(target=pages.serve_forever, daemon=True).start()
        try:
            url = wait_until_served(tensorboard, log, runs)
            args.out.mkdir(parents=True, exist_ok=True)
            for name, (view, size) in VIEWS.items():
                page = write_page(tmp, name, url + view)
                frame = f"http://127.0.0.1:{pages.server_port}/{page}{view[view.index('#') :]}"
                screenshot(args.chromium, frame, args.out / name, size, tmp / "profile")
                print(f"{args.out / name}: {(args.out / name).stat().st_size // 1024} KB")
        finally:
            pages.shutdown()
            tensorboard.terminate()
            tensorboard.wait(10)


def train_runs(runs: Path) -> None:
    """Two short CartPole runs, alike but for ``train.dream_steps``."""
    import torch

    import genrl

    torch.set_num_threads(1)
    for steps in DREAM_STEPS:
        run_dir = runs / f"dream{steps}"
        print(f"training {run_dir.name} ...", flush=True)
        result = genrl.train_in_imagination("cartpole", run_dir=run_dir, dream_steps=steps, **RUN)
        print(
            f"  real return {result.final['eval_return_mean']:.1f} after {result.final['real_steps']} steps"
        )


def wait_until_served(tensorboard: subprocess.Popen, log: Path, runs: Path, timeout_s: float = 120) -> str:
    """TensorBoard's URL, once it serves the hparams of every run under ``runs``."""
    expected = len(list(runs.rglob("summary.json")))
    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        if tensorboard.poll() is not None:
            raise SystemExit(f"TensorBoard exited:\n{log.read_text()}")
        url = url or next((w for w in log.read_text().split() if w.startswith("http://127.0.0.1:")), None)
        if url and len(session_groups(url)) >= expected:
            return url
        time.sleep(0.2)
    raise SystemExit(f"TensorBoard did not serve {expected} runs within {timeout_s} s:\n{log.read_text()}")


def session_groups(url: str) -> list:
    body = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN"], "startIndex": 0, "sliceSize": 100}
    request = urllib.request.Request(
        url + "data/plugin/hparams/session_groups",
        json.dumps(body).encode(),
        headers={"Content-Type": "text/plain"},  # as TensorBoard's page posts it (not a form)
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read()).get("sessionGroups", [])


def write_page(folder: Path, name: str, src: str) -> str:
    """The local page that frames TensorBoard's view ``src`` and arranges it (see the module's doc)."""
    from genrl.training.hparams import METRICS

    page = Path(name).with_suffix(".html").name
    values = {"src": src, "hparams": json.dumps(SHOWN_HPARAMS), "metrics": json.dumps(list(METRICS))}
    (folder / page).write_text(PAGE % values)
    return page


def screenshot(chromium: str, url: str, png: Path, size: str, profile: Path) -> None:
    """``url`` as headless Chromium renders it, into ``png`` (reduced to a palette: a smaller file)."""
    from PIL import Image

    raw = profile.parent / f"raw-{png.name}"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={raw}"]
    subprocess.run([chromium, *flags, url], check=True, capture_output=True, timeout=120)
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass


if __name__ == "__main__":
    os.environ.setdefault("GENRL_PROGRESS", "0")
    main()
