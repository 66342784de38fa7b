"""`--user` and `exec -u` looked up in a container's /etc as runc looks them up (no root needed)."""

import pytest

from calisim.docker.errors import APIError
from calisim.docker.images import GROUP, PASSWD
from calisim.docker.users import ROOT, User, etc_of, lookup


@pytest.fixture
def etc(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP.replace("users:x:100:", "users:x:100:www-data"))
    return tmp_path / "etc"


def test_names_ids_and_groups_as_runc_finds_them(etc):
    assert lookup("", etc) == ROOT
    assert lookup("nobody", etc) == User(65534, 65534, (), "/home")
    assert lookup("www-data", etc) == User(33, 33, (100,), "/var/www")  # its supplementary group
    assert lookup("33:users", etc) == User(33, 100, (), "/var/www")
    assert lookup("1234:5", etc) == User(1234, 5, (), "/")  # IDs need no entry
    assert lookup("nobody", etc).argv() == ["-S", "65534", "-G", "65534"]


def test_unknown_names_are_refused_in_runcs_words(etc):
    with pytest.raises(APIError, match="^linux spec user: unable to find user nosuch: no matching entries in "
                                       "passwd file$"):
        lookup("nosuch", etc)
    with pytest.raises(APIError, match="unable to find group nogrp: no matching entries in group file"):
        lookup("nobody:nogrp", etc)


def test_the_writable_layer_passwd_comes_before_the_images(tmp_path, etc):
    upper = tmp_path / "upper"
    upper.mkdir()
    assert etc_of([upper, etc.parent]) == etc
    (upper / "etc").mkdir()
    (upper / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    assert etc_of([upper, etc.parent]) == upper / "etc"
