"""Probes: what a workload sees of the network, measured from inside it with scapy.

An ICMP probe sends echo requests and reports sent/received, the replies' TTL and the RTT
(min/avg/max, ms, from the kernel's transmit and receive timestamps); TCP and UDP probes report
whether a port answers (the `workload` image runs a
TCP echo on port 80 and a UDP echo on port 69, on IPv4 and IPv6).  An IPv6 destination gets
ICMPv6 echoes (the TTL reported is the replies' hop limit), TCP and UDP over IPv6.  Each probe runs
in a helper process that joins the
workload's network namespace (``nsenter -t PID -n``), so measurements come from the workload's
own interface and routes.

    python -m calisim.probes icmp DEST [--count N]   (inside a namespace: prints one JSON object;
    python -m calisim.probes tcp DEST [--bytes N]     exits 1 if DEST did not answer)
    python -m calisim.probes udp DEST
    python -m calisim.probes matrix '[["tcp", DEST], ...]'   (all at once: a JSON list of answered?)
    python -m calisim.probes batch '[["icmp", DEST], ...]'   (all at once: a JSON list of results)
    python -m calisim.probes stream DEST --interval MS --seconds S   (echoes at a fixed interval:
                                                       sent, received, the longest outage)
"""

from __future__ import annotations

import argparse
import ipaddress
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
from typing import Callable

ECHO_TCP_PORT = 80
ECHO_UDP_PORT = 69
STREAM_RECEIVE_BUFFER = 4 << 20  # bytes


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
SO_RCVBUFFORCE = 33  # not in Python's socket module
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


def family_of(destination: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in destination else socket.AF_INET


def canonical(destination: str) -> str:
    """An address as the kernel reports a reply's source (fd00:0::1 -> fd00::1), to match replies by."""
    try:
        return str(ipaddress.ip_address(destination))
    except ValueError:
        return destination


def icmp_socket(version: int) -> socket.socket:
    """A raw ICMP socket, or ICMPv6 (whose messages arrive without their IP header)."""
    if version == 6:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)


ECHO_REPLY = {4: 0, 6: 129}  # the echo reply's ICMP type in each version


@dataclass(frozen=True)
class EchoReply:
    id: int
    seq: int
    source: str
    ttl: int | None  # the TTL, or an IPv6 reply's hop limit


def parse_echo_reply(data: bytes, ancillary: list, source: str, version: int) -> EchoReply | None:
    """An echo reply as scapy reads it: IPv4's comes with its IP header, IPv6's without (its hop
    limit is in the IPV6_HOPLIMIT control message); None for any other ICMP message."""
    if version == 4:
        from scapy.layers.inet import ICMP, IP

        reply = IP(data)
        if not reply.haslayer(ICMP) or reply[ICMP].type != 0:
            return None
        return EchoReply(reply[ICMP].id, reply[ICMP].seq, reply.src, reply.ttl)
    from scapy.layers.inet6 import ICMPv6EchoReply

    if not data or data[0] != 129:
        return None
    reply = ICMPv6EchoReply(data)
    hop_limit = next((struct.unpack("i", payload[:4])[0] for level, kind, payload in ancillary
                      if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT), None)
    return EchoReply(reply.id, reply.seq, source, hop_limit)


def echo_request(identifier: int, sequence: int, payload: bytes, version: int) -> bytes:
    """An ICMP (type 8) or ICMPv6 (type 128) echo request; the kernel fills in ICMPv6's checksum."""
    if version == 4:
        from scapy.layers.inet import ICMP

        return bytes(ICMP(type=8, id=identifier, seq=sequence) / payload)
    from scapy.layers.inet6 import ICMPv6EchoRequest

    return bytes(ICMPv6EchoRequest(id=identifier, seq=sequence, cksum=0) / payload)


ECHO_INTERVAL = 0.2  # seconds between echo requests


def icmp(destination: str, count: int = 4, timeout: float = 1.0) -> ProbeResult:
    """Echo requests built and parsed by scapy, sent and received on a raw ICMP (or ICMPv6) socket
    (so the kernel routes them exactly as the workload's own traffic).  The RTT is the kernel's: from the
    request's transmit timestamp to the reply's receive timestamp (SO_TIMESTAMPING), so neither
    scapy's parsing nor this process's scheduling is in it.  A request goes out every ECHO_INTERVAL
    whether or not the one before was answered (as ping's do), and each has timeout seconds for its
    reply: an unreachable destination costs (count - 1) * ECHO_INTERVAL + timeout, not count * timeout.
    A reply counts if the kernel received it within timeout of its request, however late this
    process reads it (on a loaded machine it may wait for the CPU)."""
    destination = canonical(destination)
    version = 6 if family_of(destination) == socket.AF_INET6 else 4
    identifier = os.getpid() & 0xFFFF
    deadlines: dict[int, float] = {}  # sequence -> when its reply stops counting
    sent_at: dict[int, int] = {}  # sequence -> transmit timestamp, ns
    answered: dict[int, tuple[int, float]] = {}  # sequence -> (ttl, rtt ms)
    with icmp_socket(version) as sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TIMESTAMPING)
        if version == 6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        expected = Expected(destination, version, identifier, timeout, sent_at)
        started = time.monotonic()
        while True:
            now = time.monotonic()
            sequence = len(deadlines)
            if sequence < count and now >= started + sequence * ECHO_INTERVAL:
                request = echo_request(identifier, sequence, b"calisim-probe" + bytes(43), version)
                before = time.clock_gettime_ns(time.CLOCK_REALTIME)
                sock.sendto(request, (destination, 0))
                deadlines[sequence] = time.monotonic() + timeout
                sent_at[sequence] = sent_timestamp(sock, before)
                continue
            waiting = [deadline for number, deadline in deadlines.items() if number not in answered and deadline > now]
            if sequence == count and not waiting:
                break
            wake = min(waiting + ([started + sequence * ECHO_INTERVAL] if sequence < count else []))
            if select.select([sock], [], [], max(0.0, wake - now))[0]:
                take_echo_reply(sock, expected, answered)
        # a probe kept off the CPU past its deadlines may not have read replies that came in time
        while take_echo_reply(sock, expected, answered):
            pass
    ttls = [answered[number][0] for number in sorted(answered)]
    rtts = [answered[number][1] for number in sorted(answered)]
    return ProbeResult("icmp", destination, count, len(ttls), ttls[0] if ttls else None,
                       round(min(rtts), 3) if rtts else None, round(sum(rtts) / len(rtts), 3) if rtts else None,
                       round(max(rtts), 3) if rtts else None)


@dataclass(frozen=True)
class Expected:
    """What makes a message the reply to one of a probe's requests, in time."""
    destination: str
    version: int
    identifier: int
    timeout: float
    sent_at: dict[int, int]  # sequence -> transmit timestamp, ns


def take_echo_reply(sock: socket.socket, expected: Expected, answered: dict[int, tuple[int, float]]) -> bool:
    """Read one message off sock without waiting; if it is the reply to one of the expected requests
    and the kernel received it within the timeout of that request, record its TTL and RTT in answered.
    False when there was nothing to read."""
    try:
        data, ancillary, _, peer = sock.recvmsg(65535, 512, socket.MSG_DONTWAIT)
    except BlockingIOError:  # nothing, or only a late TX stamp
        try:
            sock.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        return True
    reply = parse_echo_reply(data, ancillary, peer[0], expected.version)
    if (reply is None or reply.id != expected.identifier or reply.seq not in expected.sent_at
            or reply.seq in answered or reply.source != expected.destination):
        return True
    received_at = kernel_timestamp(ancillary) or time.clock_gettime_ns(time.CLOCK_REALTIME)
    rtt_ns = received_at - expected.sent_at[reply.seq]
    if rtt_ns <= expected.timeout * 1e9:
        answered[reply.seq] = (reply.ttl, rtt_ns / 1e6)
    return True


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
    with socket.socket(family_of(destination), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(b"calisim", (destination, port))
            ok = sock.recvfrom(64)[0] == b"calisim"
        except OSError:
            ok = False
    rtt = round((time.monotonic() - started) * 1000, 3) if ok else None
    return ProbeResult("udp", destination, 1, int(ok), None, rtt, rtt, rtt, port)


PROBES = {"icmp": icmp, "tcp": tcp, "udp": udp}


def probe_from(pid: int, protocol: str, destination: str, count: int = 4, size: int = 8,
               run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> ProbeResult:
    """Run a probe inside the network namespace of process pid (a workload's sandbox), by run
    (subprocess.run, or one that runs it on the server of the workload's host)."""
    argv = ["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-m", "calisim.probes", protocol, destination]
    if protocol == "icmp":
        argv += ["--count", str(count)]
    if protocol == "tcp":
        argv += ["--bytes", str(size)]
    done = run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode not in (0, 1) or not done.stdout.strip():  # 1: measured, nothing answered
        raise RuntimeError(f"probe {protocol} to {destination} failed: {done.stderr.strip()}")
    return ProbeResult(**json.loads(done.stdout))


def batch(probes: list[tuple[str, str]], timeout: float = 1.0, count: int = 4) -> list[ProbeResult]:
    """Many probes at once (one thread each; ICMP ones send count echoes), in one process."""
    from concurrent.futures import ThreadPoolExecutor

    def one(probe: tuple[str, str]) -> ProbeResult:
        protocol, destination = probe
        if protocol == "icmp":
            return icmp(destination, count=count, timeout=timeout)
        return PROBES[protocol](destination, timeout=timeout)

    with ThreadPoolExecutor(max_workers=max(1, min(64, len(probes)))) as pool:
        return list(pool.map(one, probes))


def matrix(probes: list[tuple[str, str]], timeout: float = 1.0) -> list[bool]:
    """Many probes at once, a single ICMP echo each: whether each answered."""
    return [result.reachable for result in batch(probes, timeout, count=1)]


def _many_from(pid: int, command: str, probes: list[tuple[str, str]], timeout: float) -> list:
    argv = ["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-m", "calisim.probes", command, json.dumps(probes),
            "--timeout", str(timeout)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"probe {command} from {pid} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def matrix_from(pid: int, probes: list[tuple[str, str]], timeout: float = 1.0) -> list[bool]:
    """``matrix`` run inside the network namespace of process pid."""
    return _many_from(pid, "matrix", probes, timeout)


def batch_from(pid: int, probes: list[tuple[str, str]], timeout: float = 1.0) -> list[ProbeResult]:
    """``batch`` (4 echoes an ICMP probe) run inside the network namespace of process pid: one
    interpreter (and one scapy import) for all of them."""
    return [ProbeResult(**result) for result in _many_from(pid, "batch", probes, timeout)]


@dataclass(frozen=True)
class StreamResult:
    """An echo stream across a fault: the longest run of unanswered probes, from the sending of
    its first probe to the sending of the next answered one (``outage_ended`` None: the stream
    ended inside it).  Times are Unix seconds, to be read beside the run's faults.log."""

    destination: str
    interval_ms: float
    started: float
    ended: float
    sent: int
    received: int
    duplicates: int
    longest_outage_ms: float
    outage_began: float | None
    outage_ended: float | None


def longest_outage(sent_at: list[float], answered: set[int], end: float) -> tuple[float, float | None, float | None]:
    """(milliseconds, began, ended) of the longest run of unanswered probes (0, None, None if none)."""
    best: tuple[float, float | None, float | None] = (0.0, None, None)
    first_lost = None
    for sequence, at in enumerate(sent_at + [None]):
        if sequence < len(sent_at) and sequence not in answered:
            first_lost = sequence if first_lost is None else first_lost
            continue
        if first_lost is not None:
            began = sent_at[first_lost]
            length = ((at if at is not None else end) - began) * 1000
            if length > best[0]:
                best = (round(length, 3), began, at)
            first_lost = None
    return best


def stream(destination: str, interval_ms: float = 10.0, seconds: float = 10.0, timeout: float = 1.0) -> StreamResult:
    """ICMP (or, to an IPv6 destination, ICMPv6) echoes every interval_ms for seconds (on a fixed
    schedule, so a stall does not shift later probes), replies collected by a second thread;
    probes still unanswered timeout seconds after the last one was sent count as lost."""
    destination = canonical(destination)
    version = 6 if family_of(destination) == socket.AF_INET6 else 4
    identifier = os.getpid() & 0xFFFF
    replies: dict[int, int] = {}
    done = threading.Event()
    with icmp_socket(version) as sock:
        # room for ~4 s of replies (duplicated ones too) should the receiver wait for the CPU (root may exceed rmem_max)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, STREAM_RECEIVE_BUFFER)
        receiver = threading.Thread(target=_collect_echo_replies,
                                    args=(sock, version, destination, identifier, replies, done), daemon=True)
        receiver.start()
        sent_at: list[float] = []
        started = time.time()
        count = max(1, int(seconds * 1000 / interval_ms))
        payload = b"calisim-stream" + bytes(42)
        for sequence in range(count):
            pause = started + sequence * interval_ms / 1000 - time.time()
            if pause > 0:
                time.sleep(pause)
            sent_at.append(time.time())
            try:
                sock.sendto(echo_request(identifier, sequence & 0xFFFF, payload, version), (destination, 0))
            except OSError:
                pass  # no route now (a link is down): a lost probe like any other
        ended = time.time()
        time.sleep(timeout)
        done.set()
        receiver.join()
    answered = {sequence for sequence in replies if sequence < count}
    outage, began, back = longest_outage(sent_at, answered, ended)
    return StreamResult(destination, interval_ms, round(started, 3), round(ended, 3), count, len(answered),
                        sum(replies.values()) - len(replies), outage, began and round(began, 3),
                        back and round(back, 3))


def echo_reply_sequence(packet: bytes, version: int, identifier: int) -> int | None:
    """The sequence number of an echo reply to identifier, read with struct (a stream reads a
    hundred a second: scapy's parsing would cost more than the echoes); None for anything else."""
    header = (packet[0] & 0x0F) * 4 if version == 4 else 0  # a raw IPv6 socket gives no IPv6 header
    if len(packet) < header + 8:
        return None
    kind, _, _, reply_id, sequence = struct.unpack("!BBHHH", packet[header:header + 8])
    return sequence if kind == ECHO_REPLY[version] and reply_id == identifier else None


def _collect_echo_replies(sock, version: int, destination: str, identifier: int, replies: dict[int, int],
                          done: threading.Event) -> None:
    """Count echo replies per sequence number (more than one: the network duplicated it); once done
    is set, those already queued (a receiver kept off the CPU reads them late), then stop."""
    while True:
        finishing = done.is_set()
        ready, _, _ = select.select([sock], [], [], 0 if finishing else 0.1)
        if not ready:
            if finishing:
                return
            continue
        packet, peer = sock.recvfrom(65535)
        sequence = echo_reply_sequence(packet, version, identifier) if peer[0] == destination else None
        if sequence is not None:
            replies[sequence] = replies.get(sequence, 0) + 1


class StreamProbe:
    """A stream running inside a workload's network namespace while the caller breaks things."""

    def __init__(self, pid: int, destination: str, interval_ms: float = 10.0, seconds: float = 10.0) -> None:
        argv = ["nsenter", "-t", str(pid), "-n", "--", sys.executable, "-m", "calisim.probes", "stream", destination,
                "--interval", str(interval_ms), "--seconds", str(seconds)]
        self.seconds = seconds
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> StreamResult:
        stdout, stderr = self.process.communicate(timeout=self.seconds + 60)
        if self.process.returncode != 0 or not stdout.strip():
            raise RuntimeError(f"probe stream failed: {stderr.strip()}")
        return StreamResult(**json.loads(stdout))


def stream_from(pid: int, destination: str, interval_ms: float = 10.0, seconds: float = 10.0) -> StreamResult:
    """``stream`` run inside the network namespace of process pid (a workload's sandbox)."""
    return StreamProbe(pid, destination, interval_ms, seconds).result()


WAVE_MIN = 0.005  # seconds between two waves of connection attempts to the destinations not yet agreeing
WAVE_PER_DESTINATION = 0.0005  # ... and more with many destinations: at most 2000 attempts a second


def raise_file_limit() -> None:
    """Up to the hard limit: attempts to a hundred destinations, each unanswered for a timeout."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def agreement(destinations: list[str], expected: bool, timeout: float = 0.1, deadline: float = 60.0,
              port: int = ECHO_TCP_PORT) -> list[float | None]:
    """For each destination, the moment (time.monotonic) from which TCP connections to it agree with
    expected, None if none did within deadline seconds.  New connections go out in waves, one every
    WAVE_MIN seconds or more, to every destination not agreeing yet, each wave's outcome read at
    its own moment: a connection made is allowed when it is made; one unanswered for timeout
    seconds is refused from when it was sent (its SYN met the rule then), so the moment is known to
    a wave's interval, not to the timeout, and never before the connection that showed it."""
    import selectors

    raise_file_limit()
    selector = selectors.DefaultSelector()
    agreed: dict[str, float] = {}
    give_up = time.monotonic() + deadline
    next_wave = time.monotonic()
    try:
        while len(agreed) < len(destinations) and time.monotonic() < give_up:
            waiting = [destination for destination in destinations if destination not in agreed]
            if time.monotonic() >= next_wave:
                sent = time.monotonic()
                for destination in waiting:
                    _attempt(selector, destination, port, sent)
                next_wave = sent + max(WAVE_MIN, WAVE_PER_DESTINATION * len(waiting))
            for key, _ in selector.select(max(0.0, next_wave - time.monotonic())):
                destination, sent = key.data
                connected = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                _forget(selector, key.fileobj)
                if connected == expected:
                    agreed.setdefault(destination, time.monotonic() if connected else sent)
            for key in [key for key in selector.get_map().values() if time.monotonic() - key.data[1] >= timeout]:
                _forget(selector, key.fileobj)
                if not expected:
                    agreed.setdefault(key.data[0], key.data[1])
    finally:
        for key in list(selector.get_map().values()):
            _forget(selector, key.fileobj)
        selector.close()
    return [agreed.get(destination) for destination in destinations]


def _attempt(selector, destination: str, port: int, sent: float) -> None:
    import selectors

    sock = socket.socket(family_of(destination), socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.connect_ex((destination, port))
    selector.register(sock, selectors.EVENT_WRITE, (destination, sent))


def _forget(selector, sock: socket.socket) -> None:
    selector.unregister(sock)
    sock.close()


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
    for name in ("matrix", "batch"):  # matrix: answered? (one echo each); batch: each probe's result
        many = commands.add_parser(name)
        many.add_argument("probes", help='JSON list of [protocol, destination]')
        many.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each answer")
    stream_parser = commands.add_parser("stream",
                                        help="echoes at a fixed interval; prints sent, received, longest outage")
    stream_parser.add_argument("destination")
    stream_parser.add_argument("--interval", type=float, default=10.0, help="milliseconds between probes (default 10)")
    stream_parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (default 10)")
    args = parser.parse_args(argv)
    if args.command == "stream":
        if args.interval <= 0 or args.seconds <= 0:
            parser.error("--interval and --seconds must be positive")
        print(json.dumps(asdict(stream(args.destination, args.interval, args.seconds))))
        return
    if args.command == "matrix":
        print(json.dumps(matrix([tuple(probe) for probe in json.loads(args.probes)], args.timeout)))
        return
    if args.command == "batch":
        print(json.dumps([asdict(result)
                          for result in batch([tuple(probe) for probe in json.loads(args.probes)], args.timeout)]))
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
