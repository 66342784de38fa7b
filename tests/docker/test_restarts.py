"""Restart policies, log config and --stop-timeout: checked at create with dockerd's texts, kept,
and applied when a container exits (unit tests of the rules; one host through the docker CLI)."""

import pytest

import topologies
from calisim.docker.errors import APIError
from calisim.docker.restarts import FIRST_DELAY, RestartPolicy, check_create, next_delay
from calisim.emulation import Cluster

from tests.conftest import replay

DEFAULT_LOG = {"Type": "json-file", "Config": {}}


def test_each_policy_restarts_as_restartmanager_decides():
    assert not RestartPolicy().wants_restart(1, 0, False)
    assert RestartPolicy("always").wants_restart(0, 50, False)
    assert not RestartPolicy("always").wants_restart(0, 0, True)
    assert RestartPolicy("unless-stopped").wants_restart(0, 3, False)
    assert not RestartPolicy("on-failure").wants_restart(0, 0, False)
    assert RestartPolicy("on-failure").wants_restart(3, 99, False)
    assert RestartPolicy("on-failure", 2).wants_restart(3, 1, False)
    assert not RestartPolicy("on-failure", 2).wants_restart(3, 2, False)


def test_the_delay_doubles_and_starts_over_after_a_long_run():
    assert next_delay(0.0, 0.5) == FIRST_DELAY
    assert next_delay(0.4, 0.5) == 0.8
    assert next_delay(0.8, 12.0) == FIRST_DELAY


@pytest.mark.parametrize("host_config, message", [
    ({"RestartPolicy": {"Name": "bogus"}}, "invalid restart policy 'bogus'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 3}},
     "maximum retry count cannot be used with restart policy 'always'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "maximum retry count cannot be negative"),
    ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, "can't create 'AutoRemove' container with restart policy"),
    ({"LogConfig": {"Type": "bogus"}}, "logger: no log driver named 'bogus' is registered"),
    ({"LogConfig": {"Type": "json-file", "Config": {"foo": "bar"}}}, "unknown log opt 'foo' for json-file log driver"),
])
def test_bad_policies_and_log_configs_are_refused_in_dockerds_words(host_config, message):
    with pytest.raises(APIError, match=message) as refused:
        check_create(host_config, DEFAULT_LOG)
    assert refused.value.status == 400


def test_create_keeps_the_policy_and_takes_the_daemons_log_config_by_default():
    daemon_log = {"Type": "json-file", "Config": {"max-size": "10m"}}
    kept = check_create({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}, daemon_log)
    assert kept["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert kept["LogConfig"] == daemon_log
    assert check_create({"LogConfig": {"Type": "none"}}, daemon_log)["LogConfig"] == {"Type": "none", "Config": {}}
    assert check_create({}, DEFAULT_LOG)["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}


POLICIES = r"""
# on-failure:2 runs a failing command three times, then leaves it exited with its status.
host1$ docker run -d --name crash --restart on-failure:2 busybox sh -c 'echo ran; exit 3'
within 10s host1$ docker inspect -f '{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}' crash | grep -x '2 exited 3'
host1$ docker logs crash | grep -c ran | grep -x 3
# always restarts a command that succeeds, until `docker stop`; a start by the user counts from 0.
host1$ docker run -d --name again --restart always busybox true
within 10s host1$ test "$(docker inspect -f '{{.RestartCount}}' again)" -ge 3
host1$ docker stop again
host1$ docker inspect -f '{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}' again | grep -x 'exited always'
host1$ docker run -d --name once --restart unless-stopped busybox sleep 60
host1$ docker kill once && docker inspect -f '{{.State.Status}} {{.RestartCount}}' once | grep -x 'exited 0'
# Log config and the stop timeout are kept; `sleep` as PID 1 ignores SIGTERM, so stop takes the 2 s.
host1$ docker run -d --name quiet --log-driver none --stop-timeout 2 busybox sleep 60
host1$ docker inspect -f '{{.HostConfig.LogConfig.Type}} {{.Config.StopTimeout}}' quiet | grep -x 'none 2'
host1$ docker logs quiet 2>&1 | grep -q 'configured logging driver does not support reading'
host1$ timeout 7 docker stop quiet
# Refusals in dockerd's words, and nothing created.
host1$ docker run -d --name bad --restart bogus busybox true 2>&1 | grep -q "invalid restart policy 'bogus'"
host1$ docker run -d --name bad --restart always:3 busybox true 2>&1 | grep -q "maximum retry count cannot be used with restart policy 'always'"
host1$ docker run -d --name bad --log-driver bogus busybox true 2>&1 | grep -q "logger: no log driver named 'bogus' is registered"
host1$ docker run -d --name bad --log-opt foo=bar busybox true 2>&1 | grep -q "unknown log opt 'foo' for json-file log driver"
host1! docker inspect bad
"""


@pytest.mark.emulation
def test_restart_policies_log_config_and_stop_timeout_through_the_docker_cli(untouched, runs):
    with Cluster(topologies.load("flat", hosts=1)) as cluster:
        results = replay(cluster, POLICIES, keep_going=True)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
