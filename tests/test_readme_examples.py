"""Every fenced code block of the READMEs runs as written.

Each block is one case, named ``FILE:LINE`` (the line of its opening fence). A block runs as a
reader runs it at the repository root: in a fresh temporary copy of the repository (the files
git knows, so ``make format`` or a saved script never touch the checkout), with ``python`` and
``make`` finding this test run's virtualenv (``.venv`` in the copy mirrors it, see
``shadow_venv``). Python blocks run with ``python -c``; other blocks are shell, run by
``bash`` with ``set -euo pipefail``, line after line in one shell as a reader types them.

An HTML comment directly above a fence says what a block needs, ``;``-separated:

    <!-- readme-test: skip: REASON -->     cannot run here (a cloud account, the network, ...)
    <!-- readme-test: not code -->        a sketch (a directory tree, output), nothing to run
    <!-- readme-test: slow -->            a long case (marked ``slow``; still run by default)
    <!-- readme-test: name: NAME -->      a name for ``after``
    <!-- readme-test: after: NAME -->     runs in the copy of block NAME, after it
    <!-- readme-test: save: PATH -->      a file the text says to save: written to PATH

A block without a comment must run. An unknown directive, a dangling ``after`` or an
unterminated fence fails the parse case, so a marker cannot silently stop a block from running.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "cluster/README.md", "analysis/README.md")
PYTHON = {"python", "py", "python3"}
SHELL = {"", "sh", "bash", "shell", "console"}
TIMEOUT_S = 300  # one block; a ``slow`` block (the quickstart, a sweep) gets SLOW_TIMEOUT_S
SLOW_TIMEOUT_S = 1200

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`]*)")
MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")
FLAGS = {"slow", "not code"}
KEYED = {"skip", "name", "after", "save", "not code"}


class ParseError(Exception):
    pass


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None
    not_code: str | None = None
    slow: bool = False
    name: str | None = None
    after: str | None = None
    save: str | None = None
    requires: list[Block] = field(default_factory=list)  # resolved ``after`` chain, first first

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def is_slow(self) -> bool:
        return self.slow or any(b.slow for b in self.requires)


def directives(body: str, where: str) -> dict[str, str | bool]:
    """``skip: REASON`` takes the rest of the comment (a reason may hold ``;``)."""
    out: dict[str, str | bool] = {}
    rest = body
    while rest:
        if rest.startswith("skip:"):
            out["skip"] = rest[len("skip:") :].strip()
            if not out["skip"]:
                raise ParseError(f"{where}: 'skip:' needs a reason")
            break
        part, _, rest = rest.partition(";")
        part, rest = part.strip(), rest.strip()
        key, colon, value = (s.strip() for s in part.partition(":"))
        if not colon and key in FLAGS:
            out[key] = True
        elif colon and key in KEYED and value:
            out[key] = value
        else:
            raise ParseError(f"{where}: unknown readme-test directive {part!r}")
    return out


def parse(doc: str, text: str) -> list[Block]:
    """The fenced blocks of one Markdown file, with the marker comment directly above each."""
    lines = text.splitlines()
    blocks: list[Block] = []
    used: set[int] = set()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent, fence = i, len(m["indent"]), m["fence"]
        close = re.compile(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$")
        body = []
        i += 1
        while i < len(lines) and not close.match(lines[i]):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        if i == len(lines):
            raise ParseError(f"{doc}:{start + 1}: the fence is never closed")
        i += 1
        block = Block(doc, start + 1, m["lang"].lower(), "\n".join(body) + "\n")
        above = start - 1
        marker = MARKER.match(lines[above]) if above >= 0 else None
        if marker:
            used.add(above)
            d = directives(marker["body"], f"{doc}:{above + 1}")
            text_of = {k: str(v) for k, v in d.items() if v is not True}
            block.skip, block.name = text_of.get("skip"), text_of.get("name")
            block.after, block.save = text_of.get("after"), text_of.get("save")
            if "not code" in d:
                block.not_code = text_of.get("not code", "not code")
            block.slow = "slow" in d
        blocks.append(block)
    for n, line in enumerate(lines):
        if n not in used and MARKER.match(line):
            raise ParseError(f"{doc}:{n + 1}: a readme-test comment not directly above a fence")
    return blocks


def collect() -> list[Block]:
    blocks = [b for doc in DOCS for b in parse(doc, (ROOT / doc).read_text())]
    named = {}
    for b in blocks:
        if b.name:
            if b.name in named:
                raise ParseError(f"{b.id}: name {b.name!r} is also {named[b.name].id}")
            named[b.name] = b
    for b in blocks:
        seen, cur = [b], b
        while cur.after:
            if cur.after not in named:
                raise ParseError(f"{cur.id}: after {cur.after!r}: no block has that name")
            cur = named[cur.after]
            if cur in seen:
                raise ParseError(f"{b.id}: its 'after' chain loops")
            if cur.skip or cur.not_code:
                raise ParseError(f"{b.id}: runs after {cur.id}, which does not run")
            seen.append(cur)
        b.requires = seen[:0:-1]
    return blocks


try:
    BLOCKS, PARSE_ERROR = collect(), None
except ParseError as e:
    BLOCKS, PARSE_ERROR = [], str(e)


def test_readmes_parse():
    assert PARSE_ERROR is None, PARSE_ERROR
    assert BLOCKS, "no code blocks found"


def repo_files() -> list[str]:
    """The repository's files as a fresh clone (plus new files not yet committed) has them."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [f for f in out.split("\0") if f and (ROOT / f).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: everything but caches
        skip = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build"}
        return [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)
        ]


def shadow_venv(dest: Path) -> None:
    """``dest/.venv``: this interpreter's virtualenv, entry by entry through symlinks, with a
    fresh ``.installed`` stamp. The Makefile's targets then run their own commands only and
    never (re)install into the shared virtualenv (its stamp rule would ``pip install -e`` the
    temporary copy); every other Makefile line is what a reader gets."""
    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").is_file():
        pytest.skip("the tests run outside a virtualenv; the Makefile's blocks need one")
    dest.mkdir()
    for entry in venv.iterdir():
        if entry.name != ".installed":
            (dest / entry.name).symlink_to(entry)
    (dest / ".installed").touch()  # newer than the copied Makefile and pyproject.toml


def workdir(tmp_path_factory: pytest.TempPathFactory, block: Block) -> Path:
    work = tmp_path_factory.mktemp("readme") / "gansweep"
    work.mkdir()
    for f in repo_files():
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, work / f)
    shadow_venv(work / ".venv")
    return work


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), e.get("PATH", "")])
    # the checkout under test, whatever the virtualenv's editable install points at
    e["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), e.get("PYTHONPATH", "")] if p)
    e.pop("RAY_ADDRESS", None)  # a local Ray of its own, as on a reader's machine
    e["PYTHONUNBUFFERED"] = "1"
    return e


def execute(block: Block, cwd: Path) -> None:
    if block.save:
        path = cwd / block.save
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code)
        if block.lang in PYTHON:
            compile(block.code, f"{block.id} (saved as {block.save})", "exec")
        return
    if block.lang in PYTHON:
        cmd = [sys.executable, "-c", block.code]
    elif block.lang in SHELL:
        script = (
            "set -euo pipefail\n"
            f"trap 'echo \"readme-test: failed at {block.doc}:$((LINENO + {block.line - 2})): "
            "$BASH_COMMAND\" >&2' ERR\n"
            f"{block.code}"
        )
        cmd = ["bash", "-c", script]
    else:
        pytest.fail(f"{block.id}: a ```{block.lang} block: mark it 'skip: REASON' or 'not code'")
    timeout = SLOW_TIMEOUT_S if block.slow else TIMEOUT_S
    try:
        p = subprocess.run(
            cmd,
            cwd=cwd,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{block.id}: still running after {timeout} s\n{e.stdout}")
    if p.returncode != 0:
        tail = "\n".join(p.stdout.splitlines()[-60:])
        pytest.fail(
            f"{block.id} exited {p.returncode}:\n{block.code}\n--- output (tail) ---\n{tail}"
        )


# block id -> the copy it ran in (None: it failed); blocks with ``after`` reuse their chain's
DONE: dict[str, Path | None] = {}


def run_block(tmp_path_factory: pytest.TempPathFactory, block: Block) -> None:
    work = None
    for b in [*block.requires, block]:
        if b.id in DONE and b is not block:
            if DONE[b.id] is None:
                pytest.fail(f"{block.id} runs after {b.id}, which failed")
            work = DONE[b.id]
            continue
        if work is None:
            work = workdir(tmp_path_factory, b)
        DONE[b.id] = None
        execute(b, work)
        DONE[b.id] = work


def case(block: Block):
    marks = [pytest.mark.slow, pytest.mark.timeout(SLOW_TIMEOUT_S * 2)] if block.is_slow else []
    if block.skip:
        marks.append(pytest.mark.skip(reason=f"{block.id}: {block.skip}"))
    elif block.not_code:
        marks.append(pytest.mark.skip(reason=f"{block.id}: {block.not_code}"))
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [case(b) for b in BLOCKS])
def test_readme_block(tmp_path_factory, block):
    run_block(tmp_path_factory, block)
