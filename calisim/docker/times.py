"""Times as dockerd writes them: RFC 3339 with nanoseconds (inspect, logs --timestamps) and
units.HumanDuration (`docker ps`'s STATUS)."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(moment: float) -> str:
    if not moment:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration, as `docker ps` shows it."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    if seconds < 120:
        return "About a minute"
    if seconds < 3600:
        return f"{int(seconds // 60)} minutes"
    if seconds < 7200:
        return "About an hour"
    return f"{int(seconds // 3600)} hours"


def parse_rfc3339(text: str) -> float:
    """rfc3339's text back to a time (0.0 for Go's zero time)."""
    if text.startswith("0001-"):
        return 0.0
    stamp, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return moment + float(f"0.{fraction or 0}")
