"""confd keeps BIRD running as runsv does: a BIRD that dies while it is being started again (a
second fault within the first one's restart) is started again too, not given up on.  Found by the
fault schedules' scale profile: the supervisor loop ended, the node stayed without BIRD, and its
peers' graceful-restart recovery waited for it (no root needed: BIRD is stood in for)."""

import asyncio

from calisim.node.confd import Confd
from calisim.node.paths import NodePaths
from calisim.process.daemon import DaemonError


def test_a_bird_dying_while_it_starts_is_started_again(tmp_path):
    confd = Confd(None, NodePaths(tmp_path / "run", tmp_path / "log"), [], lambda entries: "")
    starts = []

    async def start_bird(recovery: bool = False) -> None:
        starts.append(recovery)
        if len(starts) == 1:  # killed before its control socket answered
            confd.bird = await asyncio.create_subprocess_exec("true")
            await confd.bird.wait()
            raise DaemonError("BIRD exited with code -9; see bird.log")
        confd.bird = await asyncio.create_subprocess_exec("sleep", "30")

    async def scenario() -> None:
        confd.start_bird = start_bird
        confd.bird = await asyncio.create_subprocess_exec("true")  # the BIRD a fault just killed
        supervisor = asyncio.create_task(confd.keep_bird_running())
        try:
            for _ in range(100):
                if len(starts) == 2 or supervisor.done():
                    break
                await asyncio.sleep(0.1)
            assert not supervisor.done(), supervisor.exception()
        finally:
            supervisor.cancel()
            if confd.bird.returncode is None:
                confd.bird.kill()
                await confd.bird.wait()

    asyncio.run(scenario())
    assert starts == [True, True]  # both with -R: graceful-restart recovery, as Calico's run script
