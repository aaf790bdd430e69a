"""Whether an address lies in any of tens of thousands of networks, without a scan.

Cloud providers publish ~10,000 prefixes per feed; a rule naming ``aws:eu-west-1``
must answer for every blob request. ``PrefixSet`` keeps each address family's
networks as sorted, merged integer ranges (overlapping and adjacent prefixes joined),
so a lookup is one binary search: O(log n), no allocation.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_Ranges = tuple[list[int], list[int]]  # starts, ends (inclusive), both sorted


def _merged(spans: list[tuple[int, int]]) -> _Ranges:
    starts: list[int] = []
    ends: list[int] = []
    for start, end in sorted(spans):
        if ends and start <= ends[-1] + 1:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


class PrefixSet:
    """A set of IPv4 and IPv6 networks answering ``address in prefixes``."""

    def __init__(self, networks: Iterable[Network]) -> None:
        spans: dict[type, list[tuple[int, int]]] = {
            ipaddress.IPv4Address: [], ipaddress.IPv6Address: []}
        for network in networks:
            spans[type(network.network_address)].append((int(network.network_address),
                                                         int(network.broadcast_address)))
        self._families = {family: _merged(found) for family, found in spans.items()}

    def __contains__(self, address: Address) -> bool:
        starts, ends = self._families[type(address)]  # by class: no property call
        value = int(address)
        i = bisect.bisect_right(starts, value) - 1
        return i >= 0 and value <= ends[i]

    def __len__(self) -> int:
        """The number of disjoint ranges held (merged prefixes count once)."""
        return sum(len(starts) for starts, _ in self._families.values())
