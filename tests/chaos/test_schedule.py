"""The chaos schedule: drawn from the seed alone (the same seed, the same schedule; another seed,
another), within the run, one fault at a time; and the one-line refusals of bad input."""

import pytest

from calisim.chaos import schedule
from calisim.chaos.schedule import KINDS, ChaosError

HOSTS = ["host1", "host2", "host3"]


def test_the_same_seed_draws_the_same_schedule_and_another_seed_another():
    first = schedule.faults(7, 600, list(KINDS), HOSTS, 10, 6), schedule.churn(7, 600, HOSTS)
    assert first == (schedule.faults(7, 600, list(KINDS), HOSTS, 10, 6), schedule.churn(7, 600, HOSTS))
    assert first != (schedule.faults(8, 600, list(KINDS), HOSTS, 10, 6), schedule.churn(8, 600, HOSTS))


@pytest.mark.parametrize("seed", range(20))
def test_faults_come_one_at_a_time_within_the_run_from_the_kinds_asked(seed):
    events = schedule.faults(seed, 300, ["link", "bird", "etcd"], HOSTS, 8, 5)
    assert events, "a 300 s run with a fault every 8 s has faults"
    assert {event.kind for event in events} <= {"link", "bird", "etcd"}
    assert {event.host for event in events if event.kind != "etcd"} <= set(HOSTS)
    assert {event.host for event in events if event.kind == "etcd"} <= {"etcd"}  # the member is the run's to find
    assert events[0].at >= schedule.WARMUP
    for event, following in zip(events, events[1:]):
        assert event.at + event.seconds < following.at
    assert all(event.seconds == 0 if event.kind == "bird" else 2.5 <= event.seconds <= 5 for event in events)
    assert events[-1].at + events[-1].seconds <= 300 - 5  # time left to heal and recover


def test_churn_never_removes_more_workloads_than_it_created():
    alive = 0
    for change in schedule.churn(3, 600, HOSTS):
        alive += 1 if change.action == "run" else -1
        assert alive >= 0
    assert {change.action for change in schedule.churn(3, 600, HOSTS)} == {"run", "rm"}


@pytest.mark.parametrize("parse, text, says", [
    (schedule.parse_kinds, "link,boom", "--kinds: unknown fault kind 'boom' (known: link, loss, partition"),
    (schedule.parse_kinds, ",", "--kinds: unknown fault kind ','"),
    (schedule.parse_seed, "seven", "--seed must be a whole number, not 'seven'"),
    (lambda text: schedule.parse_seconds(text, "--duration"), "0", "--duration must be more than 0 seconds"),
    (lambda text: schedule.parse_seconds(text, "--duration"), "soon", "--duration must be a number of seconds"),
])
def test_bad_input_is_one_line(parse, text, says):
    with pytest.raises(ChaosError) as refused:
        parse(text)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_good_input_is_read():
    assert schedule.parse_kinds("link, etcd,link") == ["link", "etcd"]
    assert schedule.parse_seed("0x10") == 16
    assert [schedule.parse_seconds(text, "--duration") for text in ("90", "90s", "2m", "0.5")] == [90, 90, 120, 0.5]
