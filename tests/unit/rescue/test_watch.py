"""Reading nftables change notifications (``rescue.watch.concerns_rescue``)."""

from __future__ import annotations

import struct

from anycast_announcer.rescue.watch import concerns_rescue, rescue_changes


def _attribute(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _message(message: int, table: bytes, *, subsystem: int = 10) -> bytes:
    payload = b"\x02\x00\x00\x00" + _attribute(1, table + b"\0") + _attribute(2, b"info\0")
    header = struct.pack("=IHHII", 16 + len(payload), subsystem << 8 | message, 0, 1, 0)
    return header + payload


def test_a_deleted_rescue_table_is_a_change() -> None:
    assert concerns_rescue(_message(2, b"anycast_rescue"))


def test_a_foreign_table_is_not() -> None:
    assert not concerns_rescue(_message(2, b"filter"))
    assert not concerns_rescue(_message(6, b"anycast_rescue_x"))


def test_element_updates_and_other_subsystems_are_not() -> None:
    assert not concerns_rescue(_message(12, b"anycast_rescue"))
    assert not concerns_rescue(_message(2, b"anycast_rescue", subsystem=1))


def test_the_change_is_found_among_other_messages() -> None:
    datagram = _message(0, b"filter") + _message(8, b"anycast_rescue")
    assert concerns_rescue(datagram)


def test_truncated_datagrams_are_ignored_whatever_the_cut() -> None:
    whole = _message(2, b"anycast_rescue")
    for cut in range(len(whole)):
        assert not concerns_rescue(whole[:cut])


def test_a_deleted_table_names_its_family() -> None:
    """nfgenmsg's first byte is the family: NFPROTO_IPV4 2, NFPROTO_IPV6 10."""
    v6 = bytearray(_message(2, b"anycast_rescue"))
    v6[16] = 10
    change = rescue_changes(_message(2, b"anycast_rescue") + bytes(v6))
    assert change is not None
    assert change.deleted == {"ip", "ip6"}
    altered = rescue_changes(_message(8, b"anycast_rescue"))
    assert altered is not None
    assert altered.deleted == frozenset()


def test_a_table_deleted_and_created_again_is_not_deleted() -> None:
    """Our own whole-table replacement must not look like a flush (it would loop)."""
    replaced = rescue_changes(_message(2, b"anycast_rescue") + _message(0, b"anycast_rescue"))
    assert replaced is not None
    assert replaced.deleted == frozenset()
    deleted: set[str] = set()
    rescue_changes(_message(2, b"anycast_rescue"), deleted)
    rescue_changes(_message(0, b"anycast_rescue"), deleted)  # a later datagram
    assert deleted == set()


def _in_family(message: bytes, family: int) -> bytes:
    raw = bytearray(message)
    raw[16] = family  # nfgenmsg's first byte
    return bytes(raw)


def test_the_directory_netdev_table_deleted_alone_is_named() -> None:
    """NFPROTO_NETDEV (5): ``nft delete table netdev anycast_rescue`` or ``flush ruleset
    netdev`` must be written back like a flushed ip table, not wait for a rewrite."""
    change = rescue_changes(_in_family(_message(2, b"anycast_rescue"), 5))
    assert change is not None
    assert change.deleted == {"netdev"}


def test_a_flushed_ruleset_names_all_three_tables() -> None:
    datagram = b"".join(_in_family(_message(2, b"anycast_rescue"), family) for family in (2, 10, 5))
    change = rescue_changes(datagram)
    assert change is not None
    assert change.deleted == {"ip", "ip6", "netdev"}


def test_a_netdev_table_replaced_whole_is_not_deleted() -> None:
    """The egress table is written as declare, delete, declare: not a deletion."""
    replaced = b"".join(_in_family(_message(m, b"anycast_rescue"), 5) for m in (0, 2, 0))
    change = rescue_changes(replaced)
    assert change is not None
    assert change.deleted == frozenset()


def test_tables_of_other_families_are_changes_but_never_deleted_families() -> None:
    """inet (1), arp (3), bridge (7): not ours to write back, but still worth a look."""
    for family in (1, 3, 7):
        change = rescue_changes(_in_family(_message(2, b"anycast_rescue"), family))
        assert change is not None
        assert change.deleted == frozenset()
