"""Page weight and Lighthouse's mobile performance score of the home page and a post.

    .venv/bin/python bench/pages.py [RUNS]

Starts the processes of `make serve` (gunicorn and nginx with the shipped configuration)
on free ports against a SQLite copy of the demo content, then runs Lighthouse (from npm,
pinned in bench/package.json; `make bench-tools`) with Debian's Chromium, in its default
mobile emulation, RUNS times per page. The worst score and the heaviest load of the runs
are printed and written to bench/results/pages.json.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.web import NoMail, host
from tests.stack import Stack, a_post_path, stack_environment

LIGHTHOUSE = ROOT / "bench" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/bin/chromium"
TARGETS = {"home": 120, "post": 60}  # KB, from the issue that set them


def lighthouse(url, report):
    subprocess.run(
        [
            LIGHTHOUSE,
            url,
            "--quiet",
            "--only-categories=performance",
            "--output=json",
            f"--output-path={report}",
            "--chrome-flags=--headless --no-sandbox --disable-gpu",
        ],
        check=True,
        env={**os.environ, "CHROME_PATH": CHROMIUM},
    )
    audits = json.loads(report.read_text())
    return {
        "score": round(audits["categories"]["performance"]["score"] * 100),
        "kilobytes": audits["audits"]["total-byte-weight"]["numericValue"] / 1024,
        "largest contentful paint (ms)": audits["audits"]["largest-contentful-paint"][
            "numericValue"
        ],
    }


def measure(stack, directory, runs):
    pages = {"home": "/", "post": a_post_path()}
    results = {}
    for name, path in pages.items():
        measured = [lighthouse(stack.url + path, directory / f"{name}.json") for _ in range(runs)]
        results[name] = {
            "path": path,
            "worst score": min(run["score"] for run in measured),
            "heaviest (KB)": round(max(run["kilobytes"] for run in measured), 1),
            "slowest largest contentful paint (ms)": round(
                max(run["largest contentful paint (ms)"] for run in measured)
            ),
            "target (KB)": TARGETS[name],
        }
    return results


def main(runs):
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        stack = Stack(directory, stack_environment(directory, NoMail))
        stack.start("web", "proxy")
        try:
            results = measure(stack, directory, runs)
        finally:
            stack.stop()
    for name, figures in results.items():
        print(
            f"{name:5} score {figures['worst score']:3}  {figures['heaviest (KB)']:6.1f} KB "
            f"(target {figures['target (KB)']} KB)"
        )
    output = ROOT / "bench" / "results"
    output.mkdir(exist_ok=True)
    report = {"machine": host(), "pages": results}
    (output / "pages.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
