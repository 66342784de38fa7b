"""The prunes' answers and refusals that need no daemon (the rest: test_api.py, on a live cluster)."""

import pytest

from calisim.docker import prune
from calisim.docker.errors import APIError


def test_prunes_take_docker_1_13s_filters_only():
    assert prune.images({}) == prune.images({"dangling": ["false"]}) == {"ImagesDeleted": None, "SpaceReclaimed": 0}
    assert prune.build_cache() == {"CachesDeleted": None, "SpaceReclaimed": 0}
    for refuse in (lambda: prune.images({"until": ["1h"]}), lambda: prune.refuse_filters({"label": ["a=b"]})):
        with pytest.raises(APIError) as refused:
            refuse()
        assert refused.value.status == 400 and "Invalid filter '" in str(refused.value)
