#!/usr/bin/env python3
"""Runs the README's example commands as written and checks their output against the README.

Run by scripts/test.sh (CI) after `cargo test`, with the binary it built:

    python3 scripts/readme-check.py --segd target/release/segd [--readme README.md] [--only TEXT]

Needs grpcurl on the PATH (scripts/test.sh installs it into .venv-readme when missing),
curl and openssl.

MARKING A BLOCK. Only fenced blocks marked by an HTML comment on the line right above
the opening fence are run; every other block is left alone:

    <!-- readme-check -->
    ```sh
    ...
    ```

The comment may carry options, `key="value"` (or key=value without spaces):
  serve="ARGS"   the block has no `segd serve` line of its own: start `segd serve ARGS`
                 before its first command (e.g. serve="--demo 100000").
  skip="TEXT"    do not run the commands containing TEXT (e.g. skip="pip install");
                 repeatable.
  background="TEXT"  run the commands containing TEXT in the background (a stream such
                 as WatchSegments): they are not awaited, and their output, collected
                 until the block's server stops, is checked at the block's end.

HOW A BLOCK RUNS. Each marked block runs in a fresh empty directory (with `tests` and
`proto` linked from the repository, so README paths such as tests/fixtures/... work), so
`./segd-data` and written files start empty for every block. Commands run in order with
bash (`set -eo pipefail`), `segd` on the PATH being the binary under test and
`cargo run --release -- ARGS` meaning `segd ARGS`. A `segd serve ...` line (or the
block's serve= option) starts the server: the check picks free ports and rewrites
127.0.0.1:50051 (gRPC), 127.0.0.1:8080 (HTTP) and 127.0.0.1:9090 (metrics) everywhere
in the block to them, waits until they accept connections, and stops the server
(SIGTERM) at the block's end. A second serve line in a block stops the first server.

EXPECTED OUTPUT. Comment lines right below a command (no blank line between) are its
expected stdout, without the leading `# `:

    curl -s 127.0.0.1:8080/v1/segments:count -d '{"where": "age < 30"}'
    # {"count":"26391","total":"100000","serverTimeUs":"…","cached":false}

so put a blank line between a command and a comment that describes the next one. A
command with no output shown must exit 0 and must not print an error body
(`{"code": ..., "message": ...}`); one with an output shown must print it: compared as
JSON when both sides are JSON (one value or several one after another; the string "…"
matches any value), else as text with `…` (or `...`) matching any run of characters,
trailing blanks ignored. Comments at the end of a command
line are the shell's and are ignored.

Prints one line per command (a server started counts as one) and
`readme-check: N passed, M failed, K skipped`; exits 1 on a failure.
"""

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARK = re.compile(r"^<!--\s*readme-check\b(.*?)-->\s*$")
OPTION = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
SERVE = re.compile(r"^(?:segd|cargo run --release --) serve\b")
DEFAULT_PORTS = {"grpc": 50051, "http": 8080, "metrics": 9090}
COMMAND_TIMEOUT = 120
START_TIMEOUT = 120


class Block:
    def __init__(self, line, options):
        self.line = line  # 1-based line of the opening fence
        self.options = options  # key -> [values]
        self.commands = []  # Command


class Command:
    def __init__(self, line, text):
        self.line = line
        self.text = text
        self.expected = None  # list of lines, or None


def parse_options(text):
    options = {}
    for m in OPTION.finditer(text):
        options.setdefault(m.group(1), []).append(m.group(2) if m.group(2) is not None else m.group(3))
    unknown = set(options) - {"serve", "skip", "background"}
    if unknown:
        raise SystemExit(f"readme-check: unknown option(s) {sorted(unknown)} in <!-- readme-check{text}-->")
    return options


def blocks_of(readme):
    """The marked fenced blocks, their commands and expected outputs."""
    lines = readme.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = MARK.match(lines[i].strip())
        if not m or i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            if m:
                raise SystemExit(f"readme-check: {readme}:{i + 1}: the marker is not right above a ``` fence")
            i += 1
            continue
        block = Block(i + 2, parse_options(m.group(1)))
        body, j = [], i + 2
        while j < len(lines) and not lines[j].startswith("```"):
            body.append((j + 1, lines[j]))
            j += 1
        block.commands = commands_of(body)
        blocks.append(block)
        i = j + 1
    return blocks


def commands_of(body):
    cmds, k, last = [], 0, None  # last: the command whose output may follow
    while k < len(body):
        no, line = body[k]
        stripped = line.strip()
        if not stripped:
            last = None
            k += 1
            continue
        if stripped.startswith("#"):
            if last is not None:
                out = stripped[1:]
                last.expected = (last.expected or []) + [out[1:] if out.startswith(" ") else out]
            k += 1
            continue
        text = [line]
        k += 1
        while (text[-1].rstrip().endswith("\\") or unclosed("\n".join(text))) and k < len(body):
            text.append(body[k][1])
            k += 1
        heredoc = HEREDOC.search("\n".join(text))
        if heredoc:
            end = heredoc.group(1)
            while k < len(body):
                text.append(body[k][1])
                k += 1
                if text[-1].strip() == end:
                    break
        last = Command(no, "\n".join(text))
        cmds.append(last)
    return cmds


def unclosed(text):
    """Whether `text` ends inside a quoted string (a command that goes on below)."""
    try:
        shlex.split(text, comments=True)
        return False
    except ValueError:
        return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_values(text):
    """The JSON values `text` holds one after another (grpcurl prints a stream's messages
    so), or None when it is not only JSON."""
    dec, values, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return values or None
        try:
            v, i = dec.raw_decode(text, i)
        except ValueError:
            return None
        values.append(v)


def wildcard(text):
    """`text` as a regular expression in which `…` and `...` match any run of characters."""
    return ".*".join(re.escape(p) for p in re.split(r"…|\.\.\.", text))


def json_match(exp, act):
    """Equal, except that the string "…" in `exp` matches any value, and `…` or `...`
    inside a string any run of characters."""
    if exp == "…":
        return True
    if isinstance(exp, str) and ("…" in exp or "..." in exp):
        return isinstance(act, str) and re.fullmatch(wildcard(exp), act, re.DOTALL) is not None
    if isinstance(exp, dict):
        return isinstance(act, dict) and exp.keys() == act.keys() and all(json_match(exp[k], act[k]) for k in exp)
    if isinstance(exp, list):
        return isinstance(act, list) and len(exp) == len(act) and all(map(json_match, exp, act))
    return exp == act and type(exp) is type(act)


def matches(expected, actual):
    exp = "\n".join(expected).rstrip()
    act = "\n".join(line.rstrip() for line in actual.rstrip().splitlines())
    exp_json, act_json = json_values(exp), json_values(act)
    if exp_json is not None and act_json is not None:
        return json_match(exp_json, act_json)
    exp = "\n".join(line.rstrip() for line in exp.splitlines())
    return re.fullmatch(wildcard(exp), act, re.DOTALL) is not None


def is_error_body(out):
    try:
        v = json.loads(out)
    except ValueError:
        return False
    return isinstance(v, dict) and set(v) == {"code", "message"}


class Runner:
    def __init__(self, segd, verbose):
        self.segd = Path(segd).resolve()
        self.verbose = verbose
        self.passed = 0
        self.skipped = 0
        self.failed = []
        self.bin = Path(tempfile.mkdtemp(prefix="readme-check-bin-"))
        (self.bin / "segd").symlink_to(self.segd)
        self.env = dict(os.environ, PATH=f"{self.bin}:{os.environ['PATH']}", NO_COLOR="1")
        self.env.pop("SEGD_LOG_FORMAT", None)

    def fail(self, where, what):
        self.failed.append(f"{where}: {what}")
        print(f"FAIL {where}\n{what}\n", flush=True)

    def rewrite(self, text, ports):
        for name, default in DEFAULT_PORTS.items():
            for host in ("127.0.0.1", "localhost"):
                text = text.replace(f"{host}:{default}", f"{host}:{ports[name]}")
        return re.sub(r"^(\s*)cargo run --release -- ", r"\1segd ", text, flags=re.M)

    def run_block(self, block, readme):
        cwd = Path(tempfile.mkdtemp(prefix="readme-check-"))
        for name in ("tests", "proto"):
            (cwd / name).symlink_to(REPO / name)
        ports = {name: free_port() for name in DEFAULT_PORTS}
        server, background = None, []
        skip = block.options.get("skip", [])
        bg = block.options.get("background", [])
        try:
            for serve_args in block.options.get("serve", []):
                server = self.start(f"segd serve {serve_args}", cwd, ports, server, f"{readme}:{block.line}")
            for c in block.commands:
                where = f"{readme}:{c.line}"
                text = self.rewrite(c.text, ports)
                if any(s in c.text for s in skip):
                    print(f"skip {where}: {c.text.splitlines()[0]}")
                    self.skipped += 1
                    continue
                if SERVE.match(c.text.strip()):
                    server = self.start(text, cwd, ports, server, where)
                    continue
                if any(s in c.text for s in bg):
                    p = subprocess.Popen(
                        ["bash", "-c", text], cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, start_new_session=True,
                    )
                    background.append((c, where, p))
                    continue
                self.run_command(c, text, cwd, where)
        finally:
            if server is not None:
                self.stop(server)
            for c, where, p in background:
                try:
                    out, err = p.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    out, err = p.communicate()
                self.check(c, where, 0, out, err, background=True)

    def run_command(self, c, text, cwd, where):
        t = time.monotonic()
        try:
            p = subprocess.run(
                ["bash", "-c", "set -eo pipefail\n" + text], cwd=cwd, env=self.env,
                capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            self.fail(where, f"$ {c.text}\ntimed out after {COMMAND_TIMEOUT} s")
            return
        self.check(c, where, p.returncode, p.stdout, p.stderr, secs=time.monotonic() - t)

    def check(self, c, where, code, out, err, background=False, secs=0.0):
        first = c.text.splitlines()[0]
        if code != 0:
            self.fail(where, f"$ {c.text}\nexit {code}\nstdout:\n{out}\nstderr:\n{err[-3000:]}")
        elif c.expected is not None and not matches(c.expected, out):
            self.fail(where, f"$ {c.text}\nexpected (README):\n" + "\n".join(c.expected) + f"\ngot:\n{out}")
        elif c.expected is None and is_error_body(out.strip()):
            self.fail(where, f"$ {c.text}\nanswered an error the README does not show:\n{out}")
        else:
            self.passed += 1
            note = " (background)" if background else f" ({secs:.1f} s)"
            print(f"ok   {where}: {first}{note}", flush=True)
            if self.verbose:
                print(out)

    def start(self, text, cwd, ports, previous, where):
        if previous is not None:
            self.stop(previous)
        args = shlex.split(text, comments=True)
        if args[:4] == ["cargo", "run", "--release", "--"]:
            args = ["segd"] + args[4:]
        args[0] = str(self.segd)
        flags = {a.split("=")[0] for a in args}
        for flag, name in (("--listen", "grpc"), ("--http-listen", "http")):
            if flag not in flags:
                args += [flag, f"127.0.0.1:{ports[name]}"]
        log = open(cwd / f"serve-{len(list(cwd.glob('serve-*.log')))}.log", "w")
        t = time.monotonic()
        p = subprocess.Popen(args, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        want = [ports["grpc"]] + ([ports["http"]] if "--http-listen off" not in text else [])
        while time.monotonic() - t < START_TIMEOUT:
            if p.poll() is not None:
                break
            if all(self.accepts(port) for port in want):
                print(f"ok   {where}: {' '.join(shlex.quote(a) for a in args[1:])} (serving after {time.monotonic() - t:.1f} s)")
                self.passed += 1
                return p
            time.sleep(0.1)
        self.stop(p)
        self.fail(where, f"$ {text}\nthe server did not start; its log:\n{Path(log.name).read_text()[-3000:]}")
        raise StopBlock()

    @staticmethod
    def accepts(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    @staticmethod
    def stop(p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


class StopBlock(Exception):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segd", required=True, help="the segd binary under test")
    ap.add_argument("--readme", default=str(REPO / "README.md"))
    ap.add_argument("--only", help="run only the blocks whose text contains this")
    ap.add_argument("--verbose", action="store_true", help="print every command's output")
    args = ap.parse_args()
    for tool in ("grpcurl", "curl", "openssl"):
        if subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            raise SystemExit(f"readme-check: {tool} is not on the PATH")
    readme = Path(args.readme)
    blocks = blocks_of(readme)
    if args.only:
        blocks = [b for b in blocks if any(args.only in c.text for c in b.commands)]
    if not blocks:
        raise SystemExit(f"readme-check: no marked block in {readme}")
    runner = Runner(args.segd, args.verbose)
    for b in blocks:
        try:
            runner.run_block(b, readme.name)
        except StopBlock:
            pass
    print(f"\nreadme-check: {runner.passed} passed, {len(runner.failed)} failed, {runner.skipped} skipped")
    for f in runner.failed:
        print(f"  failed: {f.splitlines()[0]}")
    sys.exit(1 if runner.failed else 0)


if __name__ == "__main__":
    main()
