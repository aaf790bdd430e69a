"""The container image, checked without a Docker engine.

A small parser reads the Dockerfile (continuations, comments, JSON and shell forms,
build ARGs in FROM) so the tests can assert what the image promises: a multi-stage
build on a slim base, a numeric non-root user, a stdlib HEALTHCHECK, the blobgate
entry point. Then the build is replayed on this machine: the build context is
assembled the way ``.dockerignore`` filters it, the builder stage's COPY and RUN
steps run for real under a temporary root (container paths mapped into it), and the
installed console script is started the way the image starts it: ``version``,
``check-config`` on the image's configuration, and ``serve`` with the HEALTHCHECK
command run against it.

The replay installs the image's environment from ``requirements/runtime.txt`` with
``--require-hashes``, as ``docker build`` does (see ``support.image``), so these tests
also prove the locked runtime set is complete. The final stage's ``pip uninstall`` of
the base image's installers is not replayed (it would act on this machine's interpreter).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from blobgate.config import Config
from blobgate.devstack.pki import write_signing_files

from support.image import REPO, DockerIgnore, Image, Stage, ignore_regex, parse

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
JSON_FORM = ("CMD", "ENTRYPOINT", "SHELL")


def test_parser_reads_continuations_and_forms() -> None:
    text = (
        "# syntax=docker/dockerfile:1\nARG BASE=python:3.11-slim\n"
        "FROM ${BASE} AS build\nRUN a \\\n    # note\n && b\n"
        'FROM $BASE\nENV A=1 \\\n    B="$A two"\nCMD ["x", "y"]\n'
    )
    args, parsed = parse(text)
    assert args == {"BASE": "python:3.11-slim"}
    assert [(s.image, s.name) for s in parsed] == [
        ("python:3.11-slim", "build"), ("python:3.11-slim", None)]
    assert parsed[0].last("RUN").args == "a  && b"
    assert parsed[1].env() == {"A": "1", "B": "1 two"}
    assert parsed[1].last("CMD").json_args() == ["x", "y"]


# --- what the Dockerfile promises --------------------------------------------------------


def test_multi_stage_on_a_slim_base(stages: list[Stage], builder: Stage, final: Stage) -> None:
    assert len(stages) >= 2
    assert builder.name == "builder"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", final.image), final.image
    # The venv's interpreter symlinks point into the base image: both stages share it.
    assert builder.image == final.image
    python = re.match(r"python:(\d+\.\d+)", final.image)
    assert python is not None
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python[1] + ".0")


def test_final_stage_has_no_build_tools_or_caches(final: Stage) -> None:
    assert not final.all("ADD")
    runs = " ".join(i.args for i in final.all("RUN"))
    for tool in ("apt-get", "apk", "gcc", "make", "curl", "wget", "pip install"):
        assert tool not in runs
    copies = [i.flags() for i in final.all("COPY")]
    from_builder = [rest.split() for flags, rest in copies if flags.get("from") == "builder"]
    # The environment lands at the path it was built at, so its shebangs stay valid.
    assert from_builder == [["/opt/blobgate", "/opt/blobgate"]]
    assert final.env()["PATH"].startswith("/opt/blobgate/bin:")


def test_runs_as_numeric_non_root_user(final: Stage) -> None:
    user = final.last("USER").args
    assert re.fullmatch(r"\d+:\d+", user), user
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0
    assert gid > 0
    # USER comes after every RUN, so nothing runs as root after it.
    position = final.instructions.index(final.last("USER"))
    assert all(i.keyword != "RUN" for i in final.instructions[position:])


def test_read_only_root_filesystem_friendly(builder: Stage, final: Stage) -> None:
    env = final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TMPDIR"] == "/tmp"
    assert env["HOME"] == "/tmp"
    assert builder.env()["PIP_NO_CACHE_DIR"] == "1"


def test_entrypoint_and_ports(final: Stage) -> None:
    assert final.last("ENTRYPOINT").json_args() == ["blobgate"]
    assert final.last("CMD").json_args() == ["serve", "--config", "/etc/blobgate/blobgate.yaml"]
    destinations = [rest.split()[-1] for flags, rest in (i.flags() for i in final.all("COPY"))
                    if "from" not in flags]
    assert "/etc/blobgate/blobgate.yaml" in destinations
    defaults = Config()
    exposed = {int(p) for i in final.all("EXPOSE") for p in i.args.split()}
    assert exposed == {defaults.server.port, defaults.metrics.port}


def healthcheck(final: Stage) -> tuple[dict[str, str], list[str]]:
    flags, rest = final.last("HEALTHCHECK").flags()
    keyword, _, command = rest.partition(" ")
    assert keyword == "CMD"
    return flags, json.loads(command)


def test_healthcheck_uses_the_stdlib(final: Stage) -> None:
    flags, command = healthcheck(final)
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert f"http://127.0.0.1:{Config().metrics.port}/healthz" in command[2]
    assert {"interval", "timeout", "retries"} <= flags.keys()


def test_oci_labels(final: Stage) -> None:
    args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in final.all("ARG")}
    labels = final.labels()
    prefix = "org.opencontainers.image."
    assert {f"{prefix}{k}" for k in ("title", "description", "version", "revision",
                                     "created", "licenses")} <= labels.keys()
    assert labels[f"{prefix}title"] == "blobgate"
    assert labels[f"{prefix}version"] == "${VERSION}"
    assert args["VERSION"] == PYPROJECT["project"]["version"]
    license_ = PYPROJECT["project"]["license"]  # an SPDX string, or the older {text = ...}
    assert labels[f"{prefix}licenses"] == (
        license_ if isinstance(license_, str) else license_["text"])
    assert labels[f"{prefix}description"] == PYPROJECT["project"]["description"]


def test_dockerignore_matcher() -> None:
    ignore = DockerIgnore([
        (False, "*", ignore_regex("*")), (True, "src", ignore_regex("src")),
        (False, "**/__pycache__", ignore_regex("**/__pycache__")),
    ])
    assert ignore.excluded("tests/x.py")
    assert not ignore.excluded("src/a/b.py")
    assert ignore.excluded("src/a/__pycache__/b.pyc")
    assert ignore.excluded("__pycache__")


def test_build_context_is_only_what_the_image_needs(context_files: list[str]) -> None:
    top = {f.split("/")[0] for f in context_files}
    assert top == {"pyproject.toml", "README.md", "src", "config", "requirements"}
    assert {f for f in context_files if f.startswith("requirements/")} == {
        "requirements/runtime.txt", "requirements/build.txt", "requirements/sbom.txt"}
    assert "config/blobgate.yaml" in context_files
    assert not [f for f in context_files if "__pycache__" in f or ".egg-info" in f]
    package = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "src").rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert set(package) <= set(context_files)


def test_builder_produced_a_complete_wheel(image: Image, context_files: list[str]) -> None:
    [wheel] = image.path("/wheels").glob("blobgate-*.whl")
    assert wheel.name.startswith(f"blobgate-{PYPROJECT['project']['version']}-py3-none-any")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = {f.removeprefix("src/") for f in context_files if f.startswith("src/blobgate/")}
    assert package <= names
    assert "blobgate/py.typed" in names


def test_installed_package_is_the_wheel_with_bytecode(image: Image) -> None:
    python = image.venv / "bin" / "python"
    probe = (
        "import blobgate, importlib.metadata as md\n"
        "from packaging.requirements import Requirement\n"
        "print(blobgate.__file__)\n"
        "for text in md.requires('blobgate') or []:\n"
        "    req = Requirement(text)\n"
        "    if req.marker is None or req.marker.evaluate({'extra': ''}):\n"
        "        assert req.specifier.contains(md.version(req.name), prereleases=True), text\n"
    )
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                            env=image.environ(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(image.venv)
    # pip compiled the modules at build time, so a read-only root never needs to.
    assert list((image.venv / "lib").glob("python3*/site-packages/blobgate/__pycache__/*.pyc"))
    assert not (image.venv / "bin" / "pip").exists()


def test_version_command(image: Image, final: Stage) -> None:
    entrypoint = final.last("ENTRYPOINT").json_args()
    result = image.run([*entrypoint, "version"], image.environ())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"blobgate {PYPROJECT['project']['version']}"


def _files(tree: Path) -> set[tuple[str, float]]:
    return {(str(p), p.stat().st_mtime) for p in tree.rglob("*")}


def test_check_config_on_the_image_configuration(
    image: Image, final: Stage, tmp_path: Path
) -> None:
    entrypoint = final.last("ENTRYPOINT").json_args()
    cmd = final.last("CMD").json_args()
    argv = [*entrypoint, "check-config",
            *(str(image.path(a)) if a.startswith("/") else a for a in cmd[1:])]
    certificate = write_signing_files(tmp_path).cert_path
    before = _files(image.venv)

    ok = image.run(argv, image.environ(BLOBGATE_AUTH_CERTIFICATES=str(certificate)))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "configuration OK"

    missing = image.run(argv, image.environ(BLOBGATE_AUTH_CERTIFICATES=str(tmp_path / "no")))
    assert missing.returncode == 2
    assert "auth.certificates" in missing.stderr
    assert _files(image.venv) == before  # nothing written into the image


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(url: str, process: subprocess.Popen[str], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {deadline_s}s")


def test_image_serves_and_passes_its_healthcheck(
    image: Image, final: Stage, tmp_path: Path
) -> None:
    http_port, metrics_port = _free_port(), _free_port()
    env = image.environ(
        BLOBGATE_AUTH_CERTIFICATES=str(write_signing_files(tmp_path).cert_path),
        BLOBGATE_SERVER_HOST="127.0.0.1", BLOBGATE_SERVER_PORT=str(http_port),
        BLOBGATE_METRICS_HOST="127.0.0.1", BLOBGATE_METRICS_PORT=str(metrics_port),
        BLOBGATE_ADMIN_PORT=str(_free_port()),
        BLOBGATE_UPSTREAM_URL=f"http://127.0.0.1:{_free_port()}",
        BLOBGATE_SERVER_SHUTDOWN_GRACE_S="1",
        AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="example",
        AWS_EC2_METADATA_DISABLED="true",
    )
    argv = [*final.last("ENTRYPOINT").json_args(),
            *(str(image.path(a)) if a.startswith("/") else a
              for a in final.last("CMD").json_args())]
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable is not None
    before = _files(image.venv)
    _, check = healthcheck(final)
    check = [c.replace(f":{Config().metrics.port}/", f":{metrics_port}/") for c in check]

    with subprocess.Popen([executable, *argv[1:]], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            _wait_for(f"http://127.0.0.1:{metrics_port}/healthz", process)
            alive = image.run(check, env)
            assert alive.returncode == 0, alive.stderr
            # Alive but not ready: the upstream does not answer.
            with pytest.raises(urllib.error.HTTPError) as not_ready:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
            assert not_ready.value.code == 503
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr

    dead = image.run(check, env)
    assert dead.returncode != 0
    assert _files(image.venv) == before
