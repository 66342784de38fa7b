"""calicoctl's two table layouts, byte for byte as the seed shows them."""

from calisim.calicoctl.output import boxed_table, padded_columns

SEED_STATUS = """\
+---------------+-------------------+-------+----------+-------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |  SINCE   |    INFO     |
+---------------+-------------------+-------+----------+-------------+
| 192.168.3.228 | node-to-node mesh | up    | 07:21:09 | Established |
+---------------+-------------------+-------+----------+-------------+
"""


def test_node_status_table_matches_the_seed():
    assert boxed_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                       [["192.168.3.228", "node-to-node mesh", "up", "07:21:09", "Established"]]) == SEED_STATUS


def test_get_columns_match_the_seed():
    assert padded_columns(["NAME"], [["192.168.3.228"], ["192.168.3.229"]]) == (
        "NAME            \n192.168.3.228   \n192.168.3.229   \n")
    assert padded_columns(["CIDR"], [["192.168.0.0/16"], ["fd80:24e2:f998:72d6::/64"]]).splitlines()[0] == (
        "CIDR                       ")


def test_empty_listing_prints_the_header():
    assert padded_columns(["CIDR", "NAT", "IPIP"], []) == "CIDR   NAT   IPIP   \n"
