"""What `docker run --restart`, `--stop-timeout` and `--log-driver`/`--log-opt` ask of dockerd:
checked at create with dockerd 1.13's texts, kept in the container's HostConfig, and the restart
policy applied when a container exits (restartmanager's rules and back-off).

Policies: `no` never; `always` always (a `docker stop` holds it until the next start, as the
manager is stopped); `unless-stopped` unless the user stopped it; `on-failure[:N]` after a
non-zero exit, at most N times (0: no limit).  The first restart waits 100 ms, each next one
twice as long, back to 100 ms after a run of 10 s or more (no cap, as through Docker 17.03).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import APIError

POLICIES = ("no", "always", "unless-stopped", "on-failure")
FIRST_DELAY = 0.1  # seconds before the first restart
RESET_AFTER = 10.0  # a run this long puts the delay back to FIRST_DELAY
LOG_DRIVERS = ("json-file", "journald", "syslog", "gelf", "fluentd", "awslogs", "splunk", "gcplogs", "none")
READABLE_LOGS = ("json-file", "journald")  # the drivers `docker logs` can read from
JSON_FILE_OPTIONS = ("max-size", "max-file", "labels", "env")


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum: int = 0  # on-failure's N

    @classmethod
    def from_api(cls, value: dict | None) -> "RestartPolicy":
        """HostConfig.RestartPolicy as the client sent it, refused as dockerd 1.13 refuses it."""
        value = value or {}
        name, maximum = value.get("Name") or "no", int(value.get("MaximumRetryCount") or 0)
        if name not in POLICIES:
            raise APIError(400, f"invalid restart policy '{name}'")
        if name != "on-failure" and maximum:
            raise APIError(400, f"maximum retry count cannot be used with restart policy '{name}'")
        if maximum < 0:
            raise APIError(400, "maximum retry count cannot be negative")
        return cls(name, maximum)

    def to_api(self) -> dict:
        return {"Name": self.name, "MaximumRetryCount": self.maximum}

    def wants_restart(self, exit_code: int, restarts: int, manually_stopped: bool) -> bool:
        """Whether a container that just exited with exit_code, restarted restarts times since its
        last start by the user, starts again."""
        if manually_stopped:
            return False
        if self.name in ("always", "unless-stopped"):
            return True
        return self.name == "on-failure" and exit_code != 0 and (not self.maximum or restarts < self.maximum)


def next_delay(previous: float, ran_for: float) -> float:
    """The wait before the next restart: doubled, or FIRST_DELAY again after a long run."""
    return FIRST_DELAY if not previous or ran_for >= RESET_AFTER else previous * 2


def check_create(host_config: dict, default_log: dict) -> dict:
    """A create's HostConfig with its restart policy and log config checked, the daemon's default
    log config (daemon.json's log-driver and log-opts) filled in where the client gave none."""
    policy = RestartPolicy.from_api(host_config.get("RestartPolicy"))
    if host_config.get("AutoRemove") and policy.name != "no":
        raise APIError(400, "can't create 'AutoRemove' container with restart policy")
    log_config = host_config.get("LogConfig") or {}
    log_config = {"Type": log_config.get("Type") or default_log["Type"],
                  "Config": log_config.get("Config") or ({} if log_config.get("Type") else default_log["Config"])}
    check_log_config(log_config)
    return {**host_config, "RestartPolicy": policy.to_api(), "LogConfig": log_config}


def check_log_config(log_config: dict) -> None:
    """A log driver dockerd has, with options its driver knows (json-file's, checked as dockerd does)."""
    driver = log_config["Type"]
    if driver not in LOG_DRIVERS:
        raise APIError(400, f"logger: no log driver named '{driver}' is registered")
    unknown = [key for key in log_config["Config"] if driver == "json-file" and key not in JSON_FILE_OPTIONS]
    if unknown:
        raise APIError(400, f"unknown log opt '{unknown[0]}' for json-file log driver")


def after_exit(daemon, container) -> None:
    """Once a run of container has ended (daemon: the store, whose run starts it again): the
    policy's restart after its delay, unless a `docker stop` or `rm -f` comes first.  The
    container is `restarting` while it waits, as `docker ps` shows it."""
    if not container.restart_policy.wants_restart(container.exit_code, container.restart_count,
                                                  container.manually_stopped):
        return
    container.restart_delay = next_delay(container.restart_delay, container.finished_at - container.started_at)
    with daemon.events:
        container.status = "restarting"
        daemon.events.notify_all()
    cancelled = lambda: container.removed or container.manually_stopped  # noqa: E731
    if not daemon.wait_for(cancelled, container.restart_delay) and not cancelled():
        container.restart_count += 1
        try:
            return daemon.run(container)
        except APIError as error:
            container.error = str(error)
    with daemon.events:
        container.status = "exited"
        daemon.events.notify_all()
