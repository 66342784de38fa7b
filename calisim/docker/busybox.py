"""Docker Hub's busybox binary, built as docker-library builds it: BusyBox's own source, upstream's
`make defconfig`, linked statically.  Debian's busybox-static is built from Debian's config, which
leaves out nc's `-u` (CONFIG_NC_110_COMPAT) that Calico's tests and users check UDP with.

The source is Debian's source package `busybox` (the upstream tarball, plus Debian's CVE fixes,
none of which touches the config or the applet list), downloaded with `apt-get source` from `deb-src`
entries of the archives the machine's apt already gets busybox from.  Those entries, and apt's
lists and cache for them, live in a directory of the project's own (`build/busybox/apt`): the
machine's apt configuration and lists are never changed.  The build runs once (`make setup`); its
results stay in `build/busybox`:

    busybox          the static binary the images' layer links every applet to
    defconfig        `make defconfig`'s .config, as upstream ships it
    config           the .config built: defconfig with CONFIG_STATIC=y, nothing else
    busybox.links    the applets the build's config enables (`make busybox.links`)

    python -m calisim.docker.busybox DIR      build DIR/busybox ... (idempotent)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "busybox"
SOURCE_PACKAGE = "busybox"
RESULTS = ("busybox", "defconfig", "config", "busybox.links")


def run(argv: list[str], cwd: Path | None = None) -> str:
    """A build step's output; if it fails, its own last words and nothing else (make setup's log)."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise SystemExit(f"busybox: {' '.join(argv[:1] + argv[-2:])} failed:\n{tail}")
    return done.stdout


def deb_src_entries(madison: str) -> list[str]:
    """`deb-src` lines for the archives `apt-cache madison busybox` lists busybox's binaries from
    (`busybox | 1:1.35.0-4 | http://deb.debian.org/debian bookworm/main amd64 Packages`)."""
    entries: list[str] = []
    for line in madison.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 3 or not fields[2].endswith(" Packages"):
            continue
        uri, suite_component = fields[2].split()[:2]
        suite, _, component = suite_component.rpartition("/")
        entry = f"deb-src {uri} {suite} {component}"
        if suite and entry not in entries:
            entries.append(entry)
    return entries


def apt_options(apt: Path) -> list[str]:
    """apt reading only the project's sources list, keeping its lists and cache beside it."""
    return ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}", "-q"]


def download_source(apt: Path, into: Path) -> Path:
    """The unpacked upstream tree of Debian's busybox source package, with its CVE fixes applied."""
    entries = deb_src_entries(run(["apt-cache", "madison", SOURCE_PACKAGE]))
    if not entries:
        raise SystemExit(f"busybox: no archive in apt's sources offers {SOURCE_PACKAGE}")
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text("".join(f"{entry}\n" for entry in entries))
    run(["apt-get", *apt_options(apt), "update"])
    run(["apt-get", *apt_options(apt), "source", "--download-only", SOURCE_PACKAGE], cwd=into)
    (dsc,) = into.glob(f"{SOURCE_PACKAGE}_*.dsc")
    # apt checked every file against the archive's signed Sources index: no keyring needed here
    run(["dpkg-source", "--no-check", "--skip-patches", "-x", dsc.name, "src"], cwd=into)
    tree = into / "src"
    for patch in sorted((tree / "debian" / "patches").glob("CVE-*.patch")):
        run(["patch", "-p1", "-s", "-i", str(patch)], cwd=tree)
    return tree


def static_config(defconfig: str) -> str:
    """defconfig with CONFIG_STATIC=y, docker-library's one change for a binary alone in its image."""
    if "# CONFIG_STATIC is not set\n" not in defconfig:
        raise SystemExit("busybox: defconfig has no CONFIG_STATIC line to set")
    return defconfig.replace("# CONFIG_STATIC is not set\n", "CONFIG_STATIC=y\n")


def compile_static(tree: Path, into: Path) -> None:
    """`make defconfig`, static, `make busybox busybox.links`: the results in into."""
    run(["make", "defconfig"], cwd=tree)
    defconfig = (tree / ".config").read_text()
    (tree / ".config").write_text(static_config(defconfig))
    run(["make", f"-j{os.cpu_count() or 1}", "busybox", "busybox.links"], cwd=tree)
    into.mkdir(parents=True)
    (into / "defconfig").write_text(defconfig)
    shutil.copy2(tree / ".config", into / "config")
    for name in ("busybox", "busybox.links"):
        shutil.copy2(tree / name, into / name)


def build(destination: Path = BUILD_DIR) -> Path:
    """destination/busybox and its config, built unless they are there (all or nothing)."""
    destination = destination.resolve()  # the steps run in the scratch directory
    if all((destination / name).is_file() for name in RESULTS):
        return destination / "busybox"
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination) as scratch:
        results = Path(scratch) / "results"
        compile_static(download_source(destination / "apt", Path(scratch)), results)
        for name in RESULTS:
            (results / name).replace(destination / name)
    return destination / "busybox"


def applets(links: str) -> list[str]:
    """The applet names of a busybox.links file (one install path a line), sorted as `--list`."""
    return sorted(Path(line).name for line in links.split())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(build(Path(args[0]) if args else BUILD_DIR))


if __name__ == "__main__":
    main()
