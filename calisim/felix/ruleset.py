"""Felix's nftables tables, kept in the kernel incrementally: a change applies only its delta (the
set and map elements that came or went, the chains whose rules changed), a whole-table rewrite
only at start, on a timer (FULL_RESYNC, as Felix refreshes its iptables state) and when a delta
is refused.

The delta is computed between two renderings (policy.render's text, parsed back here), so the
table a delta leaves and the one a full rewrite would load are the same by construction; and
it is one `nft -f` transaction, so no packet meets half of it.  At 1000 endpoints a full table is
~450 KiB of nft input; one endpoint added is a few elements and its own chains.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Protocol

log = logging.getLogger("calico-felix")
LIBNFTABLES = "libnftables.so.1"  # Debian's libnftables1, which nft itself links (no ldconfig run to find it)
_libc = ctypes.CDLL(None)


class NftError(RuntimeError):
    """nft refused a script (the kernel then holds what it held before)."""


@dataclass(frozen=True)
class Item:
    """One named object of a table: a set, map or chain."""
    kind: str  # set / map / chain
    head: tuple[str, ...]  # a set's type and flags; a chain's hook line
    body: tuple[str, ...]  # a set's elements; a chain's rules


Table = dict[str, Item]


def parse(text: str) -> dict[str, Table]:
    """policy.render's text -> {"ip calico": {name: Item}}: its own regular layout (two-space
    indents, one object line per line, a set's elements on one line), not nft's whole grammar."""
    tables: dict[str, Table] = {}
    table: Table = {}
    kind = name = ""
    head: list[str] = []
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("table "):
            table = tables.setdefault(stripped.removeprefix("table ").removesuffix(" {"), {})
        elif line.startswith("  ") and not line.startswith("   ") and stripped.endswith("{"):
            kind, name = stripped.split()[:2]
            head, body = [], []
        elif line == "  }":
            table[name] = Item(kind, tuple(head), tuple(body))
        elif line == "}":
            continue
        elif stripped.startswith("elements = {"):
            body = stripped.removeprefix("elements = {").removesuffix("}").strip().split(", ")
        elif stripped.startswith(("type ", "flags ")) and (kind != "chain" or not head):
            head.append(stripped)
        elif stripped:
            body.append(stripped)
    return tables


def delta(before: dict[str, Table], after: dict[str, Table]) -> str | None:
    """The nft script that turns the tables before (parsed) into after; None when only a rewrite
    can (a table, or an object's type, flags or hook, came or went or changed)."""
    if before.keys() != after.keys():
        return None
    steps: list[list[str]] = [[] for _ in range(7)]
    for table, items in after.items():
        if any(name in before[table] and (before[table][name].kind, before[table][name].head) != (item.kind, item.head)
               for name, item in items.items()):
            return None
        if any(item.kind == "chain" and item.head for name, item in items.items() if name not in before[table]):
            return None  # a new base chain (a hook): rewritten with its table
        table_delta(table, before[table], items, steps)
    return "".join(line + "\n" for step in steps for line in step)


def table_delta(table: str, before: Table, after: Table, steps: list[list[str]]) -> None:
    """One table's commands, into steps in the order nft needs them: new sets and chains exist
    before anything refers to them; nothing is deleted while something still refers to it."""
    new_objects, added, rules, removed, flushed, deleted_chains, deleted_sets = steps
    for name, item in after.items():
        old = before.get(name)
        if old is None:
            if item.kind == "chain":
                new_objects.append(f"add chain {table} {name}")
            else:
                new_objects.append(f"add {item.kind} {table} {name} {{ {'; '.join(item.head)}; }}")
        if item.kind == "chain":
            if old is None or old.body != item.body:
                rules.append(f"flush chain {table} {name}")
                rules += [f"add rule {table} {name} {rule}" for rule in item.body]
            continue
        kept = set(old.body) if old is not None else set()
        if more := [element for element in item.body if element not in kept]:
            added.append(f"add element {table} {name} {{ {', '.join(more)} }}")
        if fewer := sorted(kept - set(item.body)):
            removed.append(f"delete element {table} {name} {{ {', '.join(fewer)} }}")
    for name, item in before.items():
        if name in after:
            continue
        if item.kind == "chain":
            flushed.append(f"flush chain {table} {name}")
            deleted_chains.append(f"delete chain {table} {name}")
        else:
            deleted_sets.append(f"delete {item.kind} {table} {name}")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (<malloc.h>)


def keep_freed_memory() -> None:
    """This process's malloc keeps what it frees for its next allocations rather than handing it
    back at once; ``Nft.close`` (malloc_trim) hands it back while Felix is idle.  A transaction
    frees libnftables' cache of the kernel's tables (~2 MiB of 128 KiB hash tables) and fetches
    it anew: by glibc's defaults the freed top of the heap went back to the kernel and ~500 fresh
    pages were faulted in again, 1-1.5 ms of a ~4 ms policy pass at 100 hosts."""
    _libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)  # a 128 KiB table from the heap, not a mapping of its own
    _libc.mallopt(M_TRIM_THRESHOLD, 16 << 20)  # the heap's free top kept up to 16 MiB


@functools.cache
def library() -> ctypes.CDLL:
    """libnftables, loaded once a process (the node zygote loads it for every calico-node it forks)."""
    lib = ctypes.CDLL(LIBNFTABLES)
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    for function in (lib.nft_ctx_buffer_output, lib.nft_ctx_buffer_error):
        function.argtypes = [ctypes.c_void_p]
    for function in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
        function.argtypes, function.restype = [ctypes.c_void_p], ctypes.c_char_p
    return lib


class Nft:
    """libnftables in this process, one context kept (what Debian's python3-nftables binding wraps;
    that binding is for Debian's own interpreter).  Unlike a fresh `nft -f` per change, the context
    keeps its cache of the kernel's tables while nothing else changed them (nft checks the ruleset's
    generation): at 1000 endpoints a fresh nft spends most of a delta listing the table first.

    That cache costs memory whatever the tables hold: libnftables 1.0 gives every cached table four
    hash tables of 8192 list heads (512 KiB, every head written), so with calico's two tables and
    the nat and filter tables dockerd leaves in a host a context holds ~2.1 MiB, and a transaction
    leaves ~0.6 MiB more freed in its worker thread's malloc arena.  ``close`` lets both go while
    no change is coming (Tables.rest); the next transaction makes a new context (~6 ms of CPU)."""

    def __init__(self) -> None:
        self.lib = library()
        self.context: int | None = None  # made by the first run after each close

    def open(self) -> int:
        if self.context is None:
            self.context = self.lib.nft_ctx_new(0)  # 0: NFT_CTX_DEFAULT
            self.lib.nft_ctx_buffer_output(self.context)
            self.lib.nft_ctx_buffer_error(self.context)
        return self.context

    def run(self, script: str) -> None:
        """One transaction: all of script or, refused, none of it (NftError with nft's message)."""
        context = self.open()
        done = self.lib.nft_run_cmd_from_buffer(context, script.encode())
        self.lib.nft_ctx_get_output_buffer(context)  # emptied, so output never accumulates
        error = (self.lib.nft_ctx_get_error_buffer(context) or b"").decode(errors="replace")
        if done != 0:
            raise NftError(f"nft refused the ruleset: {error.strip()[-800:]}")

    def close(self) -> None:
        """The context and its cache freed, and the free pages of every malloc arena given back to
        the kernel (glibc keeps freed memory dirty in the arena of the thread that freed it)."""
        if self.context is not None:
            self.lib.nft_ctx_free(self.context)
            self.context = None
            _libc.malloc_trim(0)


class Elements(Protocol):
    """Set elements kept outside the rendered text (Felix's address sets: addresses.AddressSets),
    so that a change to them is a few elements rather than a text rendered, parsed and compared."""

    def changes(self, tables: Iterable[str]) -> str: ...  # nft commands for what changed since the last commit

    def fill(self, tables: Iterable[str]) -> str: ...  # nft commands that put every element in

    def commit(self, tables: Iterable[str], rewritten: bool) -> None: ...  # the kernel holds them


class Tables:
    """What this Felix loaded last, so that the next text is applied as a delta from it."""

    FULL_RESYNC = 60.0

    def __init__(self, replace: str):
        self.replace = replace  # prepended to a text, replaces the tables (policy.REPLACE)
        self.nft = Nft()
        self.applied: str | None = None
        self.parsed: dict[str, Table] = {}
        self.rewritten_at: float | None = None

    def resync_due(self) -> bool:
        return self.rewritten_at is None or time.monotonic() - self.rewritten_at >= self.FULL_RESYNC

    def delta_ready(self) -> bool:
        """The next change is a delta through a context that holds its cache (no rewrite due):
        ~0.5 ms of nft at 100 hosts, ~3 ms at 1000 endpoints, less than handing it to a worker
        thread and back costs on a busy machine, where each of the two wake-ups waits for a CPU.
        A first change after ``rest`` (a new context filling its cache) or a rewrite is not."""
        return self.applied is not None and self.nft.context is not None and not self.resync_due()

    def rest(self) -> None:
        """No change to apply now (a resync found the tables current): nft's context and cache go
        (Nft.close) until the next change or full rewrite.  10-20 ms once it had a context (most
        of it malloc_trim walking the interpreter's heap): Felix runs it off the event loop."""
        self.nft.close()

    def apply(self, text: str, elements: Elements | None = None) -> str:
        """Make the kernel's tables text, with elements' set elements; says how: "unchanged",
        "elements" (set elements alone), "delta" or "rewrite".  A refused delta (the kernel's table
        edited by hand, say) falls back to the rewrite; a refused rewrite raises NftError, and the
        kernel keeps its last good tables.  A text equal to the kernel's is not parsed again."""
        current = not self.resync_due() and self.applied is not None
        unchanged = current and text == self.applied
        parsed = self.parsed if unchanged else parse(text)
        if current:
            changes = elements.changes(parsed) if elements is not None else ""
            script = "" if unchanged else delta(self.parsed, parsed)
            if script is not None:
                try:
                    if script or changes:
                        self.nft.run(script + changes)
                    self.applied, self.parsed = text, parsed
                    if elements is not None:
                        elements.commit(parsed, rewritten=False)
                    return "delta" if script else "elements" if changes else "unchanged"
                except NftError as error:
                    log.warning("policy delta refused, rewriting the table: %s", error)
        self.applied = None
        self.nft.run(self.replace + text + (elements.fill(parsed) if elements is not None else ""))
        if elements is not None:
            elements.commit(parsed, rewritten=True)
        self.applied, self.parsed, self.rewritten_at = text, parsed, time.monotonic()
        return "rewrite"
