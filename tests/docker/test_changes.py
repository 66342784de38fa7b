"""docker diff's reading of a writable layer (no root: the whiteouts are in test_api.py, on a live cluster)."""

from calisim.docker.changes import ADDED, CHANGED, changes


def test_a_layer_reads_as_added_and_changed_paths_without_dockers_own_files(tmp_path):
    upper, lower = tmp_path / "upper", tmp_path / "lower"
    for directory in (upper / "etc", upper / "data", lower / "etc"):
        directory.mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root\n")
    for name, text in (("etc/passwd", "root\nnew\n"), ("etc/hosts", "127.0.0.1 x\n"), ("data/f", "x")):
        (upper / name).write_text(text)
    assert changes(upper, [lower]) == [{"Path": "/data", "Kind": ADDED}, {"Path": "/data/f", "Kind": ADDED},
                                       {"Path": "/etc", "Kind": CHANGED}, {"Path": "/etc/passwd", "Kind": CHANGED}]
