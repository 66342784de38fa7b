"""`calisim web`: how soon a change in a lab reaches an open page, and what watching costs.

    python benchmarks/web.py [--repeats 5] [--json PATH] [--png PATH]

On a two-host lab (nodes started, a 3 s BGP hold time, as its browser tests use) with one page
open in Debian's Chromium (Playwright, as tests/web/test_server.py drives it), each repeat takes
host2's link down through the lab's control socket and measures, from the moment the lab answered:
the link drawn down on the page (the push: one poll of ``inspect`` plus the server-sent event),
the session drawn red (the hold time running out, then the push), and after `link up` the
session drawn green again (later at each repeat: after every hold-timer expiry BIRD waits
longer before it reconnects, its `error wait time` doubling from 1 s up to 10 s, forgotten after
300 s without an error).  Also one ``inspect`` call's duration, and the CPU seconds per minute
of the web server and of the lab (its process and the commands ``inspect`` runs) with the page
open and nothing changing.  Everything runs in a private namespace of its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calisim.emulation import sandbox

sandbox.enter()

from rich.console import Console  # noqa: E402  (imports after the re-exec into the sandbox)

from report import label_axes, write_runs  # noqa: E402  (benchmarks/ is this script's directory)
from calisim.emulation import lab  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "web.json"
LAB = "webbench"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE_SECONDS = 20.0
COLUMNS = ("repeat", "link_drawn_down_s", "session_red_s", "session_green_s")


def calisim(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "calisim", *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"calisim {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of pid (and of its reaped children when asked), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def seconds_until(page, condition: str, since: float, timeout: float = 60) -> float:
    page.wait_for_function(condition, timeout=timeout * 1000)
    return round(time.monotonic() - since, 3)


def edge(name: str, value: str) -> str:
    return f"calisim.cy.getElementById('{name}').data('state') === '{value}'"


def repeat(page, client: lab.LabClient, number: int) -> dict:
    client.call("fault", argv=["link", "host2", "s1", "down"])
    down = time.monotonic()
    drawn = seconds_until(page, edge("link:host2:s1", "down"), down)
    red = seconds_until(page, edge("bgp:host1:host2", "down"), down)
    client.call("fault", argv=["link", "host2", "s1", "up"])
    green = seconds_until(page, edge("bgp:host1:host2", "established"), time.monotonic())
    return {"repeat": number, "link_drawn_down_s": drawn, "session_red_s": red, "session_green_s": green}


def idle_cost(server: subprocess.Popen, record: lab.LabRecord) -> dict:
    """CPU seconds per minute of the server and of the lab's process (with the commands it ran
    and reaped: inspect's `ip`, birdc's socket) with a page open and nothing changing."""
    lab_process = sandbox.children(record.pid)[0]  # under the lab's PID 1: the process serving lab.sock
    server_before, lab_before = cpu_seconds(server.pid), cpu_seconds(lab_process, children=True)
    started = time.monotonic()
    time.sleep(IDLE_SECONDS)  # a measurement window, not a wait for something
    minutes = (time.monotonic() - started) / 60
    return {"web_server_cpu_s_per_min": round((cpu_seconds(server.pid) - server_before) / minutes, 2),
            "lab_cpu_s_per_min": round((cpu_seconds(lab_process, children=True) - lab_before) / minutes, 2)}


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for column, marker in zip(COLUMNS[1:], "os^"):
        axes.plot([r["repeat"] for r in runs], [r[column] for r in runs], marker=marker,
                  label=column.replace("_", " "))
    axes.set_xticks([r["repeat"] for r in runs])
    axes.set_ylim(bottom=0)
    label_axes(axes, "repeat", "seconds after the lab answered",
               "calisim web: a lab's change on an open page (two_host, BGP hold time 3 s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--png", type=Path, default=RESULTS.with_suffix(".png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    console = Console()
    os.environ[lab.LABS_ENV] = tempfile.mkdtemp(prefix="webbench-")
    calisim("up", "two_host", "--start-nodes", "--bgp-hold-time", "3", "--name", LAB)
    record = lab.Registry().find(LAB)
    server = subprocess.Popen([sys.executable, "-m", "calisim", "web", "--lab", LAB, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split(" live on ")[1].split()[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="webbench-profile-"), executable_path="/usr/bin/chromium", headless=True,
                args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("window.calisim && window.calisim.snapshot")
            client = record.client()
            inspect = []
            for _ in range(20):
                started = time.monotonic()
                client.call("inspect")
                inspect.append(time.monotonic() - started)
            runs = [repeat(page, client, number + 1) for number in range(args.repeats)]
            idle = idle_cost(server, record)
            browser.close()
    finally:
        server.terminate()
        server.wait()
        calisim("down", LAB)
    for run in runs:
        run.update(idle, inspect_median_s=round(statistics.median(inspect), 4))
    write_runs(console, "calisim web: seconds from the lab's answer to the page", COLUMNS, runs, args.json,
               args.png, plot)
    console.print(f"inspect: median {statistics.median(inspect) * 1000:.0f} ms; idle with one page open: "
                  f"web server {idle['web_server_cpu_s_per_min']} CPU-s/min, lab {idle['lab_cpu_s_per_min']} CPU-s/min")


if __name__ == "__main__":
    main()
