"""`calisim fault`'s command face without a cluster: what it refuses, in one line, before a lab
is asked; and that each accepted verb reaches its Faults method with the parsed values."""

import pytest

from calisim.cli.fault import check_values, command_parser, run_command
from calisim.emulation.faults import FaultError


@pytest.mark.parametrize("argv, says", [
    (["frobnicate"], "fault: argument VERB: invalid choice: 'frobnicate'"),
    (["link", "host2", "s1", "sideways"], "fault link: state must be down or up, not 'sideways'"),
    (["loss", "host2", "s1", "150"], "loss must be a percentage between 0 and 100, not '150'"),
    (["delay", "host2", "s1", "-5"], "delay must be milliseconds (50) or a duration in tc's units"),
    (["delay", "host2", "s1", "50ms", "1h"], "jitter must be milliseconds (50) or a duration in tc's units"),
    (["loss", "host2", "s1", "5%%"], "loss must be a percentage between 0 and 100, not '5%%'"),
    (["rate", "host2", "s1", "fast"], "malformed rate"),
    (["partition", "host2", "host3", "--from", "etcd"], "fault partition: --from etcd or a list of hosts, not both"),
    (["kill", "host2"], "fault kill: HOST DAEMON, or --leader etcd"),
    (["kill", "--leader", "bird"], "fault kill --leader: the leader is etcd's: `kill --leader etcd`"),
    (["stop", "--leader", "etcd1", "etcd"], "fault stop --leader: the leader is etcd's"),
    (["start", "etcd2"], "fault: the following arguments are required: DAEMON"),
])
def test_bad_command_lines_are_one_line_refusals(argv, says):
    with pytest.raises(FaultError) as refused:
        check_values(command_parser().parse_args(argv))
    assert says in str(refused.value) and "\n" not in str(refused.value)


class Recorder:
    """Stands in for Faults: records the calls run_command makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def active(self):
        return [{"fault": "partition", "host": "host2"}]


@pytest.mark.parametrize("argv, call", [
    (["link", "host2", "s1", "down"], ("link", ("host2", "s1", "down"), {})),
    (["loss", "host2", "s1", "30"], ("loss", ("host2", "s1", "30"), {})),
    (["delay", "host2", "s1", "20"], ("delay", ("host2", "s1", "20", "0"), {})),
    (["delay", "host2", "s1", "50ms", "5ms"], ("delay", ("host2", "s1", "50ms", "5ms"), {})),
    (["loss", "host2", "s1", "5%"], ("loss", ("host2", "s1", "5%"), {})),
    (["rate", "host2", "s1", "10mbit"], ("rate", ("host2", "s1", "10mbit"), {})),
    (["kill", "host2", "bird"], ("kill", ("host2", "bird"), {})),
    (["partition", "host2", "--from", "etcd"], ("partition", ("host2", None), {"from_etcd": True})),
    (["heal"], ("heal", (None,), {})),
    (["crash", "host2"], ("crash", ("host2",), {})),
])
def test_each_verb_reaches_its_faults_method(argv, call):
    faults = Recorder()
    assert run_command(faults, argv) == f"fault {' '.join(argv)}: done"
    assert faults.calls == [call]


def test_list_prints_the_faults_in_force_one_json_object_a_line():
    assert run_command(Recorder(), ["list"]) == '{"fault": "partition", "host": "host2"}'


def test_a_signal_to_the_leader_names_the_member_that_led():
    class Leading(Recorder):
        def signal_leader(self, verb):
            self.calls.append(("signal_leader", (verb,), {}))
            return "etcd2"

    faults = Leading()
    assert run_command(faults, ["kill", "--leader", "etcd"]) == "fault kill --leader etcd: done (etcd2 led the etcd cluster)"
    assert faults.calls == [("signal_leader", ("kill",), {})]
