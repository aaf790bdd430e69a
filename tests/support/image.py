"""The container image without a Docker engine: a small Dockerfile parser, the build
context as ``.dockerignore`` filters it, and a replay of the builder stage on this machine.

The replay runs the builder's COPY and RUN steps for real under a temporary root
(container paths mapped into it): the image's virtual environment is installed from
``requirements/runtime.txt`` with ``--require-hashes``, exactly as ``docker build`` would,
so what it holds is the runtime set alone, with nothing from the test environment. One
departure: ``python`` is this machine's base interpreter, not the base image's.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

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


# --- the build context -------------------------------------------------------------------


def ignore_regex(pattern: str) -> re.Pattern[str]:
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
            rules.append((exception, pattern, ignore_regex(pattern)))
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
        argv[0] = sys._base_executable  # not the test environment's interpreter
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env,
                            timeout=600, check=False)
    assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stderr[-3000:]}"



def build(base: Path, context_files: list[str], builder: Stage, final: Stage) -> Image:
    """Replay the builder stage, then the final stage's own COPYs, under ``base``."""
    context, root = base / "context", base / "root"
    for relpath in context_files:
        (context / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relpath, context / relpath)

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "UV_"))}
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

    for instruction in final.all("COPY"):
        flags, args = instruction.flags()
        if "from" not in flags:
            _copy(context, root, "/", args)
    (root / "tmp").mkdir()
    return Image(root, final)
