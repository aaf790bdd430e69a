"""blobgate's Prometheus counters, read over HTTP and summed over workers."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    """One sample: metric name, labels and value."""

    name: str
    labels: Mapping[str, str]
    value: float


def scrape(url: str) -> list[Sample]:
    """Every sample ``url`` (a ``/metrics`` endpoint on loopback) exposes."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URL
        text = response.read().decode()
    return [
        Sample(sample.name, sample.labels, float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of samples called ``name`` whose labels include ``labels``."""
    return sum(
        (s.value for s in samples
         if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())),
        0.0,
    )
