"""IP-range feeds in each provider's published format, made from documentation ranges."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

Regions = Mapping[str, Sequence[str]]  # region -> prefixes (IPv4 and IPv6 mixed)


def aws(regions: Regions) -> str:
    """AWS ``ip-ranges.json``."""
    return json.dumps({
        "syncToken": "1767225600", "createDate": "2026-12-01-00-00-00",
        "prefixes": [{"ip_prefix": p, "region": r, "service": s, "network_border_group": r}
                     for r, ps in regions.items() for p in ps if ":" not in p
                     for s in ("AMAZON", "EC2")],
        "ipv6_prefixes": [{"ipv6_prefix": p, "region": r, "service": "AMAZON",
                           "network_border_group": r}
                          for r, ps in regions.items() for p in ps if ":" in p],
    })


def gcp(regions: Regions) -> str:
    """Google ``cloud.json``."""
    return json.dumps({
        "syncToken": "1767225600000", "creationTime": "2026-12-01T00:00:00.000000",
        "prefixes": [{"ipv6Prefix" if ":" in p else "ipv4Prefix": p,
                      "service": "Google Cloud", "scope": r}
                     for r, ps in regions.items() for p in ps],
    })


def azure(regions: Regions) -> str:
    """Azure Service Tags JSON (``AzureCloud.<region>``, plus a service tag to ignore)."""
    values = [{"name": f"AzureCloud.{r}", "id": f"AzureCloud.{r}", "properties": {
        "changeNumber": 7, "region": r, "regionId": 1, "platform": "Azure",
        "systemService": "", "addressPrefixes": list(ps), "networkFeatures": ["API"]}}
        for r, ps in regions.items()]
    values.append({"name": "Storage.WestEurope", "id": "Storage.WestEurope", "properties": {
        "region": "westeurope", "addressPrefixes": ["192.0.2.128/25"]}})
    return json.dumps({"changeNumber": 300, "cloud": "Public", "values": values})


FORMATS = {"aws": aws, "gcp": gcp, "azure": azure}


def write(path: Path, provider: str, regions: Regions) -> Path:
    path.write_text(FORMATS[provider](regions))
    return path
