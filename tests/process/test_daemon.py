"""calisim.process.daemon: the start line, the log, the ready check and its failures, for a
daemon stood in for by sh (no root needed)."""

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from calisim.process.daemon import Daemon, DaemonError


@dataclass
class Toy(Daemon):
    directory: Path
    script: str  # what the daemon does; it is ready once its socket (a plain file here) exists
    name: str = "toy"
    start_timeout: float = 2.0

    @property
    def log(self) -> Path:
        return self.directory / "toy.log"

    @property
    def socket(self) -> Path:
        return self.directory / "toy.sock"

    def command(self) -> list[str]:
        return ["sh", "-c", self.script]

    def prepare(self) -> None:
        self.socket.unlink(missing_ok=True)

    def ready(self) -> bool:
        return self.socket.exists()


def test_started_ready_logged_and_stopped(tmp_path):
    toy = Toy(tmp_path, f"echo started; touch {tmp_path}/toy.sock; exec sleep 60")
    (tmp_path / "toy.sock").touch()  # a dead one's: prepare removes it, so ready means the new one
    process = toy.start()
    toy.wait_ready(process)
    toy.stop(process)
    assert process.returncode is not None
    assert (tmp_path / "toy.log").read_text() == "started\n"
    toy.wait_ready(toy.start())  # the log is appended to
    assert (tmp_path / "toy.log").read_text().count("started") == 2


def test_exit_and_silence_are_one_line_errors(tmp_path):
    with pytest.raises(DaemonError, match=rf"^toy exited with code 3; see {tmp_path}/toy.log$"):
        Toy(tmp_path, "exit 3").wait_ready(Toy(tmp_path, "exit 3").start())
    silent = Toy(tmp_path, "exec sleep 60", start_timeout=0.2)
    process = silent.start()
    try:
        with pytest.raises(DaemonError, match="^toy did not answer within 0s"):
            silent.wait_ready(process)
    finally:
        silent.stop(process)


def test_started_as_an_asyncio_child(tmp_path):
    toy = Toy(tmp_path, f"touch {tmp_path}/toy.sock; exec sleep 60")

    async def scenario() -> int:
        process = await toy.start_async()
        await toy.await_ready(process)
        process.terminate()
        return await process.wait()

    assert asyncio.run(scenario()) < 0
