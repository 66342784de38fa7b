"""A host's containers on disk, as dockerd keeps them: `/var/lib/docker/containers/<id>/`
(in the host's own /var/lib) holds `config.v2.json` (ID, Name, Config, State, RestartCount,
HasBeenStartedBefore, HasBeenManuallyStopped, NetworkSettings) and `hostconfig.json`, each
written whole (a temporary file renamed) whenever the container changes.

With the json-file log driver (the default), `<id>-json.log` holds the output a line of JSON a
line, as Docker writes it, so `docker logs` shows what came before a restart too.

A dockerd that starts reads them back (`restore`), as dockerd 1.13's restore does: a container
whose shim still runs is adopted with `"live-restore": true` in daemon.json (its output taken
back from the shim, its endpoints, names and embedded DNS as they were: inspect, exec, logs from
then on, stop, rm), and otherwise stopped (SIGTERM, its stop timeout, SIGKILL); one that died
unseen gets the status its shim wrote (255 if none).  Then `--rm` ones go, and each stopped one
starts again if its restart policy says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from ..datastore.resources.docker import Endpoint
from . import runtime
from .containers import Attachment, Container
from .errors import APIError
from .images import lookup
from .times import parse_rfc3339, rfc3339

ROOT = Path("/var/lib/docker/containers")
STOP_TIMEOUT = 10  # seconds, as dockerd waits for a container it stops at its start
STREAMS = {1: "stdout", 2: "stderr"}
log = logging.getLogger("dockerd")


def write_whole(path: Path, value: dict) -> None:
    """The file replaced at once; a temporary file per thread (an exit and a request may save together)."""
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


def config_v2(container: Container) -> dict:
    """config.v2.json: Docker's fields, the attachments as NetworkSettings.Networks, and the
    endpoints as stored (their records)."""
    return {"ID": container.id, "Name": "/" + container.name, "Created": rfc3339(container.created),
            "Path": container.cmd[0] if container.cmd else "", "Args": container.cmd[1:],
            "Config": {**container.config, "Image": container.reference}, "Image": container.image.id,
            "State": {"Status": container.status, "Running": container.running, "Paused": False,
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": container.pid,
                      "ExitCode": container.exit_code, "Error": container.error,
                      "StartedAt": rfc3339(container.started_at), "FinishedAt": rfc3339(container.finished_at)},
            "RestartCount": container.restart_count, "HasBeenStartedBefore": bool(container.started_at),
            "HasBeenManuallyStopped": container.manually_stopped, "Driver": "overlay2",
            "ServicePid": container.service.pid if container.service is not None else 0,
            "NetworkSettings": {"Networks": {a.network: {"IPAMConfig": a.ipam_config(), "Aliases": list(a.aliases)}
                                             for a in container.attachments},
                                "Endpoints": [endpoint.to_value() for endpoint in container.endpoints]}}


def save(container: Container, root: Path = ROOT) -> None:
    if container.removed:
        return
    directory = root / container.id
    directory.mkdir(parents=True, exist_ok=True)
    write_whole(directory / "hostconfig.json", container.host_config)
    write_whole(directory / "config.v2.json", config_v2(container))


def forget(container: Container, root: Path = ROOT) -> None:
    shutil.rmtree(root / container.id, ignore_errors=True)


def keep_log(container: Container, root: Path = ROOT) -> None:
    """With the json-file driver, the container's output also goes to `<id>-json.log` (a line of
    JSON a line of output, as Docker writes it), and what is there already is its log."""
    if (container.host_config.get("LogConfig") or {}).get("Type", "json-file") != "json-file":
        return
    path = root / container.id / f"{container.id}-json.log"
    container.output.log = read_log(path)
    container.output.keep = lambda entries: append_log(path, entries)


def append_log(path: Path, entries: list[tuple[float, int, bytes]]) -> None:
    with open(path, "a") as log_file:
        log_file.writelines(json.dumps({"log": data.decode(errors="replace"), "stream": STREAMS[stream],
                                        "time": rfc3339(moment)}, separators=(",", ":")) + "\n"
                            for moment, stream, data in entries)


def read_log(path: Path) -> list[tuple[float, int, bytes]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    entries = [json.loads(line) for line in lines if line.strip()]
    return [(parse_rfc3339(e["time"]), 2 if e["stream"] == "stderr" else 1, e["log"].encode()) for e in entries]


def load(directory: Path, state: Path) -> Container | None:
    """The container as it was last saved in directory (None, logged, if it cannot come back)."""
    try:
        saved = json.loads((directory / "config.v2.json").read_text())
        host_config = json.loads((directory / "hostconfig.json").read_text())
    except (OSError, ValueError) as error:
        log.warning("cannot restore the container in %s: %s", directory, error)
        return None
    config, status = saved["Config"], saved["State"]
    image = lookup(config["Image"])
    if image is None:
        log.warning("cannot restore %s: its image %s is gone", saved["Name"], config["Image"])
        return None
    attachments = [Attachment(name, (s.get("IPAMConfig") or {}).get("IPv4Address"),
                              (s.get("IPAMConfig") or {}).get("IPv6Address"), tuple(s.get("Aliases") or ()))
                   for name, s in saved["NetworkSettings"]["Networks"].items()]
    return Container(saved["ID"], saved["Name"].lstrip("/"), image, config["Image"],
                     [saved["Path"], *saved["Args"]] if saved["Path"] else [], attachments, config, host_config,
                     created=parse_rfc3339(saved["Created"]), status=status["Status"], exit_code=status["ExitCode"],
                     error=status["Error"], started_at=parse_rfc3339(status["StartedAt"]),
                     finished_at=parse_rfc3339(status["FinishedAt"]), exits=int(status["FinishedAt"][:4] != "0001"),
                     restart_count=saved["RestartCount"], manually_stopped=saved["HasBeenManuallyStopped"],
                     endpoints=[Endpoint.from_value(e) for e in saved["NetworkSettings"]["Endpoints"]],
                     directory=state / "containers" / saved["ID"],
                     service=runtime.Service.find(saved.get("ServicePid") or 0, status["Pid"]) if status["Running"]
                     else None)


def restore(daemon, live_restore: bool, root: Path = ROOT) -> threading.Thread:
    """Every container on disk back in daemon's store before the API answers: each running one
    adopted or stopped (in parallel: a stop waits out its timeout).  What needs the network
    (stale endpoints left, --rm, restart policies) goes on in the thread returned, so that a host
    booting behind a partition still gets its dockerd."""
    containers = [c for c in (load(path.parent, daemon.state) for path in sorted(root.glob("*/config.v2.json")))
                  if c is not None]
    for container in containers:
        daemon.containers[container.id] = container
        keep_log(container, root)
    workers = [threading.Thread(target=settle, args=(c, live_restore, daemon)) for c in containers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stopped = [c for c in containers if not c.running]
    log.info("restored %d containers, %d running (live-restore %s)", len(containers), len(containers) - len(stopped),
             "on" if live_restore else "off")
    after = threading.Thread(target=lambda: [restart(daemon, c) for c in stopped], daemon=True)
    after.start()
    return after


def settle(container: Container, live_restore: bool, daemon) -> None:
    """A container that was running: adopted if its shim still runs and live-restore is on, else
    stopped (or found dead) and recorded exited with its status."""
    if not container.running:
        return
    process = runtime.adopt(container.directory)
    if process is not None and live_restore:
        return adopt(daemon, container, process)
    if process is not None:
        code = stop(process, container.stop_timeout(STOP_TIMEOUT))
    else:  # died unseen (a host crash): its endpoints stay as the crash left them (Calico keeps the addresses)
        code, container.endpoints = runtime.recorded_exit(container.directory / "exit"), []
    if container.service is not None:  # a workload image's service outlives PID 1 (it holds the netns)
        container.service.kill()
        container.service.wait()
        container.service = None
    container.status, container.exit_code, container.finished_at = "exited", code, time.time()
    save(container)


def restart(daemon, container: Container) -> None:
    """A stopped container after the restore: its endpoints (still stored) left, then removed if
    --rm, or started if its restart policy says so (`always` even after a `docker stop`)."""
    try:
        daemon.leave_networks(container)
    except Exception as error:  # the restore goes on: as dockerd, a stale endpoint is logged
        log.warning("%s could not leave its networks: %s", container.name, error)
    if container.host_config.get("AutoRemove"):
        return daemon.remove(container, force=True)
    policy = container.restart_policy
    if policy.wants_restart(container.exit_code, 0, container.manually_stopped and policy.name != "always"):
        try:
            daemon.start(container)
        except Exception as error:
            log.warning("%s did not start again: %s", container.name, error)


def adopt(daemon, container: Container, process: runtime.Process) -> None:
    """A container that ran on through the restart: this dockerd's from now on."""
    daemon.serve_dns(container, process.pid)
    for endpoint in container.endpoints:
        if not daemon.bridges.is_bridge(endpoint.network_id):
            daemon.resolver.record(endpoint, present=True)
            continue
        try:
            daemon.bridges.adopt(container, endpoint)
        except APIError as error:  # e.g. its published port taken meanwhile: the container runs on without it
            log.warning("%s: %s", container.name, error)
    daemon.watch(container, process)
    log.info("adopted %s (PID %d)", container.name, process.pid)


def stop(process: runtime.Process, timeout: float) -> int:
    """A container left running by a dockerd without live-restore: SIGTERM, then SIGKILL after
    timeout seconds; its status."""
    os.kill(process.pid, signal.SIGTERM)
    if not runtime.readable([process.popen.pidfd], timeout):
        os.kill(process.pid, signal.SIGKILL)
    code = process.popen.wait()
    process.close_outputs()
    return code

