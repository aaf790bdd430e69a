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

Two departures from a real build keep this fast and offline-friendly, and are
applied to the Dockerfile's own commands: the project wheel is installed with
``--no-deps``, its dependencies being taken from the test environment (a ``.pth``
file), and the final stage's ``pip uninstall`` of the base image's installers is
not replayed (it would act on this machine's interpreter).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from blobgate.config import Config
from blobgate.devstack.pki import write_signing_files

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
JSON_FORM = ("CMD", "ENTRYPOINT", "SHELL")


# --- a tiny Dockerfile parser ------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def json_args(self) -> list[str]:
        """The exec (JSON array) form's arguments; fails on the shell form."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} must use JSON form"
        assert all(isinstance(v, str) for v in value)
        return value

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading ``--name=value`` flags, and the rest of the arguments."""
        flags: dict[str, str] = {}
        rest = self.args
        while match := re.match(r"--([a-z-]+)=(\S+)\s+", rest):
            flags[match[1]] = match[2]
            rest = rest[match.end():]
        return flags, rest


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"no {keyword} in stage {self.name or self.image}"
        return found[-1]

    def env(self, inherited: dict[str, str] | None = None) -> dict[str, str]:
        """The stage's ENV; ``$VAR`` refers to earlier ENV values, else ``inherited``
        (what the base image sets)."""
        known = dict(inherited or {})
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                key, _, value = token.partition("=")
                env[key] = known[key] = re.sub(
                    r"\$(\w+)|\$\{(\w+)\}", lambda m: known.get(m[1] or m[2], ""), value)
        return env

    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            for token in shlex.split(instruction.args):
                key, _, value = token.partition("=")
                labels[key] = value
        return labels


def instructions(text: str) -> Iterator[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continuation are ignored too
        start = start if pending else number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        yield Instruction(keyword.upper(), args.strip(), start)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation"


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global build ARG defaults and the stages, with ARGs substituted into FROM."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]],
                           instruction.args)
            parts = image.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages:
            assert instruction.keyword == "ARG", "only ARG may come before the first FROM"
            key, _, value = instruction.args.partition("=")
            args[key] = value
        else:
            stages[-1].instructions.append(instruction)
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


@pytest.fixture(scope="module")
def builder(stages: list[Stage]) -> Stage:
    return stages[0]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


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


# --- the build context -------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    rules: list[tuple[bool, str, re.Pattern[str]]]  # (exception?, pattern, regex)

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((exception, pattern, _pattern(pattern)))
        return cls(rules)

    def excluded(self, relpath: str) -> bool:
        """Docker's rule: the last pattern matching the path or a parent decides."""
        parts = relpath.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for exception, _, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = not exception
        return result

    def may_reinclude_below(self, relpath: str) -> bool:
        for exception, pattern, _ in self.rules:
            literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
            if exception and (literal.startswith(relpath + "/") or
                              (relpath + "/").startswith(literal)):
                return True
        return False

    def context(self, root: Path) -> list[str]:
        """The files ``docker build`` would send, relative to ``root``."""
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath).relative_to(root).as_posix()
            rel = "" if base == "." else base + "/"
            dirnames[:] = [d for d in dirnames if not self.excluded(rel + d)
                           or self.may_reinclude_below(rel + d)]
            files += [rel + f for f in filenames if not self.excluded(rel + f)]
        return sorted(files)


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    return DockerIgnore.read(DOCKERIGNORE).context(REPO)


def test_dockerignore_matcher() -> None:
    ignore = DockerIgnore([
        (False, "*", _pattern("*")), (True, "src", _pattern("src")),
        (False, "**/__pycache__", _pattern("**/__pycache__")),
    ])
    assert ignore.excluded("tests/x.py")
    assert not ignore.excluded("src/a/b.py")
    assert ignore.excluded("src/a/__pycache__/b.pyc")
    assert ignore.excluded("__pycache__")


def test_build_context_is_only_what_the_image_needs(context_files: list[str]) -> None:
    top = {f.split("/")[0] for f in context_files}
    assert top == {"pyproject.toml", "README.md", "src", "config"}
    assert "config/blobgate.yaml" in context_files
    assert not [f for f in context_files if "__pycache__" in f or ".egg-info" in f]
    package = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "src").rglob("*.py")
                     if "__pycache__" not in p.parts)
    assert set(package) <= set(context_files)


# --- replaying the build -----------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """The result of the replayed build: container paths live under ``root``."""

    root: Path
    final: Stage

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    @property
    def venv(self) -> Path:
        return self.path("/opt/blobgate")

    def environ(self, **extra: str) -> dict[str, str]:
        """The final stage's ENV with its paths mapped, plus ``extra``."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BLOBGATE_", "PYTHON", "VIRTUAL_ENV", "AWS_"))}
        for key, value in self.final.env({"PATH": os.environ["PATH"]}).items():
            env[key] = ":".join(str(self.path(p)) if p.startswith("/opt/") else p
                                for p in value.split(":"))
        env["HOME"] = env["TMPDIR"] = str(self.path("/tmp"))
        env.update(extra)
        return env

    def run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` the way the image would: its first word looked up on the PATH."""
        executable = shutil.which(argv[0], path=env["PATH"])
        assert executable is not None, f"{argv[0]} not found on the image's PATH"
        return subprocess.run([executable, *argv[1:]], capture_output=True, text=True,
                              env=env, timeout=60, check=False)


def _copy(context: Path, root: Path, workdir: str, args: str) -> None:
    *sources, dest = shlex.split(args)
    target = root / (dest if dest.startswith("/") else f"{workdir}/{dest}").lstrip("/")
    for source in sources:
        src = context / source
        assert src.exists(), f"COPY {source}: not in the build context"
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)
        else:
            into = target if dest.endswith("/") or len(sources) > 1 else target.parent
            into.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into / src.name if into == target else target)


def _run_step(command: list[str], root: Path, cwd: Path, env: dict[str, str]) -> None:
    """One command of a builder RUN, container paths mapped under ``root``."""
    argv: list[str] = []
    for token in command:
        if token.startswith("/"):
            mapped = str(root / token.lstrip("/"))
            argv += sorted(glob.glob(mapped)) or [mapped]
        else:
            argv.append(token)
    if argv[0] == "python":
        argv[0] = sys.executable
    if argv[1:4] == ["-m", "pip", "--python"] and "install" in argv:
        argv.insert(argv.index("install") + 1, "--no-deps")
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def image(
    tmp_path_factory: pytest.TempPathFactory, context_files: list[str],
    builder: Stage, final: Stage,
) -> Image:
    base = tmp_path_factory.mktemp("image")
    context, root = base / "context", base / "root"
    for relpath in context_files:
        (context / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relpath, context / relpath)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(builder.env())
    workdir = "/"
    for instruction in builder.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = instruction.args
            (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            _copy(context, root, workdir, instruction.args)
        elif instruction.keyword == "RUN":
            for command in instruction.args.split("&&"):
                _run_step(shlex.split(command), root, root / workdir.lstrip("/"), env)

    venv = root / "opt" / "blobgate"
    # Dependencies come from the test environment instead of PyPI (see the module doc).
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for instruction in final.all("COPY"):
        flags, args = instruction.flags()
        if "from" not in flags:
            _copy(context, root, "/", args)
    (root / "tmp").mkdir()
    return Image(root, final)


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
