"""docker cp's path stat as the CLI decodes it: Go's os.FileMode bits (no root needed; the copies
themselves: test_api.py, on a live cluster)."""

import base64
import json
import stat

from calisim.docker.archive import STAT_HEADER, go_mode, go_mode_is_dir, stat_header


def test_st_mode_becomes_gos_file_mode():
    assert go_mode(stat.S_IFREG | 0o644) == 0o644
    assert go_mode(stat.S_IFDIR | 0o755) == (1 << 31) | 0o755 and go_mode_is_dir(go_mode(stat.S_IFDIR | 0o700))
    assert go_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777 and not go_mode_is_dir(go_mode(stat.S_IFLNK | 0o777))
    assert go_mode(stat.S_IFDIR | stat.S_ISVTX | 0o777) == (1 << 31) | (1 << 20) | 0o777  # /tmp
    assert go_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    found = {"name": "hostname", "size": 13, "mode": 0o644, "mtime": "2026-12-07T12:00:00Z", "linkTarget": ""}
    assert json.loads(base64.b64decode(stat_header(found)[STAT_HEADER])) == found
