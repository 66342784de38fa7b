"""`--user` and `docker exec -u`: the user a container's process runs as, looked up in the
container's own /etc/passwd and /etc/group as runc looks it up (name or UID, then an optional
`:group` as name or GID), with its supplementary groups and its home directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import APIError


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary: the groups of /etc/group that list the user
    home: str

    def argv(self) -> list[str]:
        """nsenter's options to run a command as this user."""
        return ["-S", str(self.uid), "-G", str(self.gid)]


ROOT = User(0, 0, (), "/root")


def entries(path: Path) -> list[list[str]]:
    """The colon-separated lines of a passwd or group file (none if it is not there)."""
    try:
        return [line.split(":") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    except OSError:
        return []


def lookup(spec: str, etc: Path) -> User:
    """The user spec names (`name`, `uid`, `name:group`, `uid:gid`) in the /etc directory etc;
    APIError with runc's words for a name that is not there."""
    if not spec:
        return ROOT
    user, _, group = spec.partition(":")
    passwd = next((e for e in entries(etc / "passwd") if len(e) >= 7 and user in (e[0], e[2])), None)
    if passwd is None and not user.isdigit():
        raise APIError(500, f"linux spec user: unable to find user {user}: no matching entries in passwd file")
    uid, gid = (int(passwd[2]), int(passwd[3])) if passwd else (int(user), 0)
    home = passwd[5] if passwd else "/"
    groups = entries(etc / "group")
    if group:
        found = next((e for e in groups if len(e) >= 3 and group in (e[0], e[2])), None)
        if found is None and not group.isdigit():
            raise APIError(500, f"linux spec user: unable to find group {group}: no matching entries in group file")
        gid = int(found[2]) if found else int(group)
    name = passwd[0] if passwd else None
    extra = tuple(int(e[2]) for e in groups if len(e) >= 4 and name in e[3].split(",") and int(e[2]) != gid)
    return User(uid, gid, extra, home)


def etc_of(layers: list[Path]) -> Path:
    """The /etc a container sees before it runs: its writable layer's, else its image's topmost."""
    return next((layer / "etc" for layer in layers if (layer / "etc" / "passwd").exists()), layers[-1] / "etc")
