"""The parsed Dockerfile and its replayed build (``runtime_image``), for the image's tests."""

from __future__ import annotations

import pytest

from support.image import DOCKERFILE, DOCKERIGNORE, REPO, DockerIgnore, Image, Stage, parse


@pytest.fixture(scope="session")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="session")
def builder(stages: list[Stage]) -> Stage:
    return stages[0]


@pytest.fixture(scope="session")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="session")
def context_files() -> list[str]:
    return DockerIgnore.read(DOCKERIGNORE).context(REPO)


@pytest.fixture(scope="session")
def image(runtime_image: Image) -> Image:
    return runtime_image
