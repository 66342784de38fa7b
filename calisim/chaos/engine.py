"""A chaos run on a lab: the schedule's faults injected one at a time while workloads are created
and removed, with the invariants watched the whole time:

* reachability: every ordered pair of the anchor workloads (one a host, on network ``chaos``)
  pings once every half second for the whole run (a loop of iputils ping in the source's network
  namespace): the timeline and each pair's outages; after each heal every pair must answer, and
  every BGP session be Established, within ``recovery`` seconds;
* the datastore (calisim.chaos.ledger), read every few seconds: no address twice, blocks'
  affinities and endpoints consistent with IPAM; a finding counts once it is seen in two reads
  in a row (a write in flight shows once);
* Docker: no address on two running containers;
* at the end, with every fault healed and the churned workloads removed: IPAM holds exactly the
  running containers' addresses, no fault is in force, no removed container's process or network
  namespace is left.
"""

from __future__ import annotations

import json
import logging
import shlex
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from ..datastore import DatastoreError
from ..emulation.lab import LabError
from . import ledger, schedule
from .schedule import ChurnEvent, FaultEvent
from .target import LabTarget

NETWORK = "chaos"
POOL = "10.30.0.0/16"
SAMPLE_SECONDS = 0.5
CHECK_SECONDS = 3.0
log = logging.getLogger("calisim.chaos")


@dataclass(frozen=True)
class ChaosSpec:
    seed: int
    duration: float
    kinds: list[str]
    every: float = 10.0  # mean seconds between one fault's heal and the next fault
    lasting: float = 6.0  # longest a fault lasts
    recovery: float = 60.0  # bound for reachability and BGP after a heal


@dataclass
class Violation:
    at: float  # seconds from the start
    invariant: str
    detail: str
    fault: str  # the fault in force then ("none")


@dataclass
class Injected:
    event: FaultEvent
    began: float
    ended: float
    outcome: str  # "done", or why the lab refused it
    recovered: float | None = None  # seconds from the heal until every pair and session was back


@dataclass
class ChaosResult:
    spec: ChaosSpec
    started: float  # Unix seconds
    faults: list[Injected] = field(default_factory=list)
    churn: list[dict] = field(default_factory=list)
    samples: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # "a->b" -> (t, answered)
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass
class Workload:
    host: str
    name: str
    pid: int
    address: str

    def __str__(self) -> str:
        return self.name


class Chaos:
    """One chaos run on target (see the module's docstring); run() returns the result."""

    def __init__(self, target: LabTarget, spec: ChaosSpec):
        self.target, self.spec = target, spec
        self.faults = schedule.faults(spec.seed, spec.duration, spec.kinds, target.hosts, spec.every, spec.lasting)
        self.changes = schedule.churn(spec.seed, spec.duration, target.hosts)
        self.result = ChaosResult(spec, time.time())
        self.anchors: list[Workload] = []
        self.churned: list[Workload] = []
        self.removed: list[Workload] = []
        self.in_force = "none"
        self.done = threading.Event()
        self.lock = threading.Lock()

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> ChaosResult:
        self.prepare()
        self.result.started = time.time()
        threads = [threading.Thread(target=self.guarded, args=(self.stream, a, b), daemon=True)
                   for a in self.anchors for b in self.anchors if a is not b]
        threads += [threading.Thread(target=self.guarded, args=(work,), daemon=True)
                    for work in (self.follow_churn, self.watch)]
        for thread in threads:
            thread.start()
        try:
            for event in self.faults:
                self.inject(event)
            self.sleep_until(self.spec.duration)
        finally:
            self.done.set()  # on Ctrl-C too: the streams end with their anchors (clean_up), not waited for here
        for thread in threads:
            thread.join(timeout=self.spec.duration + 60)
        self.finish()
        return self.result

    def guarded(self, work, *arguments) -> None:
        """A watcher's thread: if it fails, what it watched went unchecked, which is a violation too."""
        try:
            work(*arguments)
        except Exception as error:  # noqa: BLE001 (reported, not swallowed)
            log.exception("%s failed", work.__name__)
            self.violate("watched", f"{work.__name__} {' '.join(str(a) for a in arguments)} stopped: {error}")

    def elapsed(self) -> float:
        return round(time.time() - self.result.started, 2)

    def sleep_until(self, at: float) -> None:
        while self.elapsed() < at and not self.done.is_set():
            time.sleep(min(0.2, max(0.0, at - self.elapsed())))

    def violate(self, invariant: str, detail: str) -> None:
        with self.lock:
            self.result.violations.append(Violation(self.elapsed(), invariant, detail, self.in_force))
        log.warning("violation: %s: %s (fault in force: %s)", invariant, detail, self.in_force)

    # -- preparing the lab -----------------------------------------------------------------------
    def prepare(self) -> None:
        """A pool, the network and one anchor workload a host; LabError if the lab cannot have them."""
        first = self.target.hosts[0]
        pools = self.must(first, "calicoctl get ipPool").stdout
        if POOL not in pools:
            self.must(first, f"echo '{{apiVersion: v1, kind: ipPool, metadata: {{cidr: {POOL}}}, "
                             "spec: {ipip: {enabled: true}}}' | calicoctl create -f -")
        if NETWORK not in self.must(first, "docker network ls --format '{{.Name}}'").stdout.split():
            self.must(first, f"docker network create --driver calico --ipam-driver calico-ipam {NETWORK}")
        self.anchors = [self.start_workload(host, f"chaos-{host}") for host in self.target.hosts]
        if None in self.anchors:
            raise LabError(f"cannot start the anchor workloads on network {NETWORK!r}")
        deadline, lagging = time.monotonic() + self.spec.recovery, ["not checked yet"]
        while lagging and time.monotonic() < deadline:  # the run starts from a healthy lab
            lagging = self.unreachable_pairs() + self.sessions_down()
        if lagging:
            raise LabError(f"the lab is not healthy before any fault: {'; '.join(lagging)}")

    def must(self, host: str, command: str):
        result = self.target.run(host, command)
        if result.rc != 0:
            raise LabError(f"{host}$ {command}: {(result.stdout + result.stderr).strip()}")
        return result

    def start_workload(self, host: str, name: str) -> Workload | None:
        """docker run on host; the workload, or None if Docker refused (a fault may be in force)."""
        started = self.target.run(host, f"docker run --net {NETWORK} --name {name} -tid busybox", timeout=60)
        if started.rc != 0:
            self.target.run(host, f"docker rm -f {name}", timeout=60)  # nothing half-made stays
            return None
        shown = self.target.run(host, "docker inspect -f '{{.State.Pid}} {{range .NetworkSettings.Networks}}"
                                      "{{.IPAddress}}{{end}}' " + name, timeout=30)
        pid, _, address = shown.stdout.strip().partition(" ")
        return Workload(host, name, int(pid), address) if shown.rc == 0 and address else None

    # -- faults ----------------------------------------------------------------------------------
    def inject(self, event: FaultEvent) -> None:
        """event's fault for its seconds, healed however the wait ends (Ctrl-C too), then the recovery."""
        self.sleep_until(event.at)
        began, heal = self.elapsed(), None
        self.in_force = f"{event.kind} {event.host}"
        try:
            heal = self.break_(event)
            self.sleep_until(began + event.seconds)
            outcome = "done" if event.kind != "etcd" else f"done ({self.in_force.split()[1]} killed)"
        except LabError as error:
            outcome = f"refused: {error}"
        finally:
            if heal:
                heal()
        injected = Injected(event, began, self.elapsed(), outcome)
        self.result.faults.append(injected)
        log.info("fault %s on %s: %s", event.kind, event.host, outcome)
        injected.recovered = self.await_recovery(event)
        self.in_force = "none"

    def break_(self, event: FaultEvent):
        """Inject event's fault; the function that heals it (None for an instant one)."""
        host, uplink = event.host, self.target.uplinks.get(event.host, "")
        fault = self.target.fault
        if event.kind == "link":
            fault(["link", host, uplink, "down"])
            return lambda: fault(["link", host, uplink, "up"])
        if event.kind == "loss":
            fault(["loss", host, uplink, "30"])
            return lambda: fault(["clear", host, uplink])
        if event.kind == "partition":
            fault(["partition", host])
            return lambda: fault(["heal", host])
        if event.kind == "etcd":
            member = self.target.kill_etcd()
            self.in_force = f"etcd {member}"
            return lambda: fault(["start", member, "etcd"])
        fault(["kill", host, event.kind])
        return None

    def await_recovery(self, event: FaultEvent) -> float | None:
        """Seconds until every pair answers and every BGP session is Established again (None, and
        a violation, if not within the bound)."""
        healed, lagging = time.monotonic(), ["not checked yet"]
        while time.monotonic() - healed < self.spec.recovery:
            lagging = self.unreachable_pairs() + self.sessions_down()
            if not lagging:
                return round(time.monotonic() - healed, 2)
            time.sleep(0.5)
        self.violate("recovery", f"{self.spec.recovery:.0f}s after {event.kind} {event.host} healed: "
                                 + "; ".join(lagging))
        return None

    def unreachable_pairs(self) -> list[str]:
        lagging = []
        for source in self.anchors:
            for destination in self.anchors:
                if source is not destination and not self.ping(source, destination):
                    lagging.append(f"{source.name} -> {destination.name} unreachable")
        return lagging

    def ping(self, source: Workload, destination: Workload) -> bool:
        return self.target.run(source.host, f"nsenter -t {source.pid} -n ping -n -q -c 1 -W 1 {destination.address}",
                               timeout=10).rc == 0

    def sessions_down(self) -> list[str]:
        try:
            state = self.target.inspect()
        except LabError as error:
            return [f"lab unreadable: {error}"]
        return [f"{host['name']} BGP {host['established']}/{len(host['bgp'])} Established"
                for host in state["hosts"] if "bgp" in host
                and (not host["bgp"] or host["established"] < len(host["bgp"]))]

    # -- the streams, the churn and the watch ------------------------------------------------------
    def stream(self, source: Workload, destination: Workload) -> None:
        """Ping destination from source every SAMPLE_SECONDS until the end: one line a sample."""
        seconds = max(1, int(self.spec.duration - self.elapsed()))
        loop = (f"end=$(($(date +%s) + {seconds})); while [ $(date +%s) -lt $end ] && [ -d /proc/{source.pid} ]; do "
                f"t=$(date +%s.%N); if ping -n -q -c 1 -W 1 {destination.address} >/dev/null 2>&1; "
                f"then r=1; else r=0; fi; "
                f"echo $t $r; sleep {SAMPLE_SECONDS}; done")  # a sample's time: when its echo was sent
        result = self.target.run(source.host, f"nsenter -t {source.pid} -n sh -c {shlex.quote(loop)}",
                                 timeout=seconds + 30)
        samples = []
        for line in result.stdout.splitlines():
            at, _, answered = line.partition(" ")
            samples.append((round(float(at) - self.result.started, 2), answered == "1"))
        self.result.samples[f"{source.name}->{destination.name}"] = samples

    def follow_churn(self) -> None:
        for number, change in enumerate(self.changes, 1):
            self.sleep_until(change.at)
            if self.done.is_set():
                return
            self.change(number, change)

    def change(self, number: int, change: ChurnEvent) -> None:
        if change.action == "run":
            workload = self.start_workload(change.host, f"chaos-c{number}")
            if workload:
                self.churned.append(workload)
            ok, name, host = workload is not None, f"chaos-c{number}", change.host
        elif not self.churned:  # the runs before were refused: nothing of the run's to remove
            return
        else:
            gone = self.churned.pop(0)
            ok = self.target.run(gone.host, f"docker rm -f {gone.name}", timeout=60).rc == 0
            (self.removed if ok else self.churned).append(gone)
            name, host = gone.name, gone.host
        self.result.churn.append({"at": self.elapsed(), "action": change.action, "host": host, "name": name,
                                  "ok": ok, "fault": self.in_force})

    def watch(self) -> None:
        """Read the ledger and Docker's addresses every CHECK_SECONDS; a finding seen twice in a row
        is a violation (once: a write in flight)."""
        previous: set[str] = set()
        reported: set[str] = set()
        while not self.done.wait(CHECK_SECONDS):
            now = set(self.findings())
            for finding in sorted(now & previous - reported):
                self.violate("consistency", finding)
                reported.add(finding)
            previous = now

    def findings(self) -> list[str]:
        try:
            with self.target.datastore() as ds:
                found = ledger.read(ds).findings()
        except DatastoreError:
            found = []  # etcd down or without quorum: nothing to read, nothing to judge
        try:
            hosts = self.target.inspect()["hosts"]
        except LabError:
            return found
        addresses = Counter(address for host in hosts for workload in host.get("workloads", [])
                            if workload["state"] == "running" for address in workload["addresses"])
        return found + [f"{address} on {count} running containers" for address, count in addresses.items()
                        if count > 1]

    # -- the end -----------------------------------------------------------------------------------
    def finish(self) -> None:
        """Remove the churned workloads, then the strict checks of a quiet lab."""
        for workload in list(self.churned):
            if self.target.run(workload.host, f"docker rm -f {workload.name}", timeout=60).rc == 0:
                self.churned.remove(workload)
                self.removed.append(workload)
        in_force = json.loads("[" + ",".join(self.target.fault(["list"]).splitlines()) + "]")
        if in_force:
            self.violate("faults healed", f"still in force at the end: {in_force}")
        self.check_ipam_equals_docker()
        self.check_nothing_leaked()

    def check_ipam_equals_docker(self) -> None:
        with self.target.datastore() as ds:
            book = ledger.read(ds)
        for finding in book.findings():
            self.violate("consistency", finding)
        running = sorted(address for host in self.target.inspect()["hosts"] for workload in host.get("workloads", [])
                         if workload["state"] == "running" for address in workload["addresses"])
        if book.workload_addresses() != running:
            self.violate("ipam equals docker", f"IPAM holds {book.workload_addresses()}, "
                                               f"the running containers have {running}")

    def check_nothing_leaked(self) -> None:
        for host in self.target.hosts:
            listed = self.target.run(host, "docker ps -a --format '{{.Names}}'").stdout.split()
            extra = sorted(set(listed) - {w.name for w in self.anchors + self.churned})
            if extra:
                self.violate("no leak", f"{host} has containers the run did not leave: {extra}")
        for workload in self.removed:
            if self.target.run(workload.host, f"test -e /proc/{workload.pid}").rc == 0:
                self.violate("no leak", f"{workload.name}'s process {workload.pid} (and its network namespace) "
                                        "outlived docker rm -f")
        with self.target.datastore() as ds:
            endpoints = len(ledger.read(ds).endpoints)
        interfaces = sum(self.cali_interfaces(host) for host in self.target.hosts)
        if interfaces != endpoints:
            self.violate("no leak", f"the hosts have {interfaces} cali interfaces for {endpoints} workload endpoints")

    def cali_interfaces(self, host: str) -> int:
        """The host's ends of workloads' veths (`ip -o link`: `7: cali1a2b@if6: ...`)."""
        lines = self.target.run(host, "ip -o link show").stdout.splitlines()
        return sum(1 for line in lines if line.split(": ")[1:2] and line.split(": ")[1].startswith("cali"))

    def clean_up(self) -> None:
        """Remove the anchors and the network (the pool stays: it may have been there before)."""
        for workload in self.anchors + self.churned:
            self.target.run(workload.host, f"docker rm -f {workload.name}", timeout=60)
        self.target.run(self.target.hosts[0], f"docker network rm {NETWORK}", timeout=60)
