"""Probes: what a workload sees of the network, measured from inside it with scapy.

An ICMP probe sends echo requests and reports sent/received, the replies' TTL and the RTT
(min/avg/max, ms, from the kernel's transmit and receive timestamps); TCP and UDP probes report whether a port answers (the `workload` image runs a
TCP echo on port 80 and a UDP echo on port 69).  Each probe runs in a helper process that joins the
workload's network namespace (``nsenter -t PID -n``), so measurements come from the workload's
own interface and routes.

    python -m calisim.probes icmp DEST [--count N]   (inside a namespace: prints one JSON object;
    python -m calisim.probes tcp DEST [--bytes N]     exits 1 if DEST did not answer)
    python -m calisim.probes udp DEST
    python -m calisim.probes matrix '[["tcp", DEST], ...]'   (all at once: a JSON list of answered?)
    python -m calisim.probes serve                     (the workload image's echo servers)
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

ECHO_TCP_PORT = 80
ECHO_UDP_PORT = 69


@dataclass(frozen=True)
class ProbeResult:
    protocol: str  # icmp, tcp, udp
    destination: str
    sent: int
    received: int
    ttl: int | None = None
    rtt_min_ms: float | None = None
    rtt_avg_ms: float | None = None
    rtt_max_ms: float | None = None
    port: int | None = None

    @property
    def reachable(self) -> bool:
        return self.received > 0


SO_TIMESTAMPING = 37  # also the control message's type (SCM_TIMESTAMPING)
TIMESTAMPING = (1 << 1) | (1 << 3) | (1 << 4) | (1 << 11)  # TX/RX software stamps, reported; TX ones without data


def kernel_timestamp(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """The software timestamp (ns, CLOCK_REALTIME) in a SCM_TIMESTAMPING control message."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPING and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds * 1_000_000_000 + nanoseconds
    return None


def sent_timestamp(sock: socket.socket, fallback: int) -> int:
    """When the kernel handed the request to the interface (the TX stamp on the error queue,
    there as soon as sendto returns on a veth); fallback if the stack gave none."""
    for _ in range(100):
        try:
            _, ancillary, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            continue
        stamp = kernel_timestamp(ancillary)
        if stamp is not None:
            return stamp
    return fallback


def icmp(destination: str, count: int = 4, timeout: float = 1.0) -> ProbeResult:
    """Echo requests built and parsed by scapy, sent and received on a raw ICMP socket (so the
    kernel routes them exactly as the workload's own traffic).  The RTT is the kernel's: from the
    request's transmit timestamp to the reply's receive timestamp (SO_TIMESTAMPING), so neither
    scapy's parsing nor this process's scheduling is in it."""
    from scapy.layers.inet import ICMP, IP

    identifier = os.getpid() & 0xFFFF
    ttls, rtts = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TIMESTAMPING)
        for sequence in range(count):
            request = ICMP(type=8, id=identifier, seq=sequence) / (b"calisim-probe" + bytes(43))
            started = time.monotonic()
            before = time.clock_gettime_ns(time.CLOCK_REALTIME)
            sock.sendto(bytes(request), (destination, 0))
            sent_at = sent_timestamp(sock, before)
            deadline = started + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                try:
                    data, ancillary, _, _ = sock.recvmsg(65535, 512, socket.MSG_DONTWAIT)
                except BlockingIOError:  # only a late TX stamp was there
                    sock.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
                    continue
                reply = IP(data)
                if (reply.haslayer(ICMP) and reply[ICMP].type == 0 and reply[ICMP].id == identifier
                        and reply[ICMP].seq == sequence and reply.src == destination):
                    received_at = kernel_timestamp(ancillary) or time.clock_gettime_ns(time.CLOCK_REALTIME)
                    ttls.append(reply.ttl)
                    rtts.append((received_at - sent_at) / 1e6)
                    break
            if sequence < count - 1:
                time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))
    return ProbeResult("icmp", destination, count, len(ttls), ttls[0] if ttls else None,
                       round(min(rtts), 3) if rtts else None, round(sum(rtts) / len(rtts), 3) if rtts else None,
                       round(max(rtts), 3) if rtts else None)


def tcp(destination: str, port: int = ECHO_TCP_PORT, timeout: float = 1.0, size: int = 8) -> ProbeResult:
    """Connect and have size bytes echoed back intact.  A large size (megabytes) sends full-size
    segments, so it also proves the path's MTU, PMTU discovery and GSO handling, which pings do not."""
    payload = (b"calisim\n" * (size // 8 + 1))[:size]
    started = time.monotonic()
    try:
        with socket.create_connection((destination, port), timeout=timeout) as conn:
            threading.Thread(target=conn.sendall, args=(payload,), daemon=True).start()
            echoed = bytearray()
            while len(echoed) < size and (chunk := conn.recv(65536)):
                echoed += chunk
            ok = echoed == payload
    except OSError:
        ok = False
    rtt = round((time.monotonic() - started) * 1000, 3) if ok else None
    return ProbeResult("tcp", destination, 1, int(ok), None, rtt, rtt, rtt, port)


def udp(destination: str, port: int = ECHO_UDP_PORT, timeout: float = 1.0) -> ProbeResult:
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(b"calisim", (destination, port))
            ok = sock.recvfrom(64)[0] == b"calisim"
        except OSError:
            ok = False
    rtt = round((time.monotonic() - started) * 1000, 3) if ok else None
    return ProbeResult("udp", destination, 1, int(ok), None, rtt, rtt, rtt, port)


PROBES = {"icmp": icmp, "tcp": tcp, "udp": udp}


def probe_from(pid: int, protocol: str, destination: str, count: int = 4, size: int = 8) -> ProbeResult:
    """Run a probe inside the network namespace of process pid (a workload's sandbox)."""
    argv = ["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-m", "calisim.probes", protocol, destination]
    if protocol == "icmp":
        argv += ["--count", str(count)]
    if protocol == "tcp":
        argv += ["--bytes", str(size)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode not in (0, 1) or not done.stdout.strip():  # 1: measured, nothing answered
        raise RuntimeError(f"probe {protocol} to {destination} failed: {done.stderr.strip()}")
    return ProbeResult(**json.loads(done.stdout))


def matrix(probes: list[tuple[str, str]], timeout: float = 1.0) -> list[bool]:
    """Many probes at once (one thread each, a single ICMP echo each): whether each answered."""
    from concurrent.futures import ThreadPoolExecutor

    def one(probe: tuple[str, str]) -> bool:
        protocol, destination = probe
        if protocol == "icmp":
            return icmp(destination, count=1, timeout=timeout).reachable
        return PROBES[protocol](destination, timeout=timeout).reachable

    with ThreadPoolExecutor(max_workers=max(1, min(64, len(probes)))) as pool:
        return list(pool.map(one, probes))


def matrix_from(pid: int, probes: list[tuple[str, str]], timeout: float = 1.0) -> list[bool]:
    """``matrix`` run inside the network namespace of process pid."""
    argv = ["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-m", "calisim.probes", "matrix", json.dumps(probes),
            "--timeout", str(timeout)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"probe matrix from {pid} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def serve() -> None:
    """The `workload` image: echo on TCP 80 and UDP 69 until killed."""
    udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_sock.bind(("0.0.0.0", ECHO_UDP_PORT))
    tcp_sock = socket.create_server(("0.0.0.0", ECHO_TCP_PORT), reuse_port=True)

    def udp_echo() -> None:
        while True:
            data, peer = udp_sock.recvfrom(65535)
            udp_sock.sendto(data, peer)

    def tcp_echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65535):
                conn.sendall(data)

    threading.Thread(target=udp_echo, daemon=True).start()
    while True:
        conn, _ = tcp_sock.accept()
        threading.Thread(target=tcp_echo, args=(conn,), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m calisim.probes", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in PROBES:
        sub = commands.add_parser(name)
        sub.add_argument("destination")
        if name == "icmp":
            sub.add_argument("--count", type=int, default=4)
        if name == "tcp":
            sub.add_argument("--bytes", type=int, default=8, help="how much to have echoed back (default 8)")
    commands.add_parser("serve")
    matrix_parser = commands.add_parser("matrix")
    matrix_parser.add_argument("probes", help='JSON list of [protocol, destination]')
    matrix_parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each answer")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve()
    if args.command == "matrix":
        print(json.dumps(matrix([tuple(probe) for probe in json.loads(args.probes)], args.timeout)))
        return
    if args.command == "icmp":
        result = icmp(args.destination, args.count)
    elif args.command == "tcp":
        result = tcp(args.destination, size=args.bytes)
    else:
        result = PROBES[args.command](args.destination)
    print(json.dumps(asdict(result)))
    sys.exit(0 if result.reachable else 1)


if __name__ == "__main__":
    main()
