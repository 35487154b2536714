"""Starts the `tollgate` binary (and, where a test needs one, the testkit's
fake upstream) on free loopback ports for the SDK tests."""

import os
import pathlib
import re
import subprocess
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-tollgate-python-test-key"


def _binary(name: str) -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build --bins` first")
    return path


class Process:
    """A child process whose output is read until it says where it listens,
    then drained in the background so it never blocks on a full pipe."""

    def __init__(self, args, env, stream, cwd=None):
        self.proc = subprocess.Popen(
            args, env=env, text=True, cwd=cwd, **{stream: subprocess.PIPE}
        )
        self.pipe = getattr(self.proc, stream)
        self.lines = []
        self.url = None
        # readline blocks on the pipe, not on a clock.
        for line in self.pipe:
            self.lines.append(line)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match:
                self.url = match.group(1)
                break
        if self.url is None:
            self.proc.kill()
            raise RuntimeError(f"{args[0]} did not start:\n" + "".join(self.lines))
        self.drain = threading.Thread(
            target=lambda: [self.lines.append(l) for l in self.pipe], daemon=True
        )
        self.drain.start()

    def stop(self):
        """SIGTERM, then wait; returns the exit code and everything it printed."""
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self.drain.join(timeout=30)
        return code, "".join(self.lines)


def start_gateway(config: pathlib.Path, env: dict) -> Process:
    return Process(
        [
            str(_binary("tollgate")),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "text",
        ],
        dict(os.environ, RUST_LOG="info", **env),
        "stderr",
        # Its spend ledger goes to a directory of its own, not the checkout.
        cwd=tempfile.mkdtemp(prefix="tollgate-pytest-"),
    )


def start_fake_upstream(sse: pathlib.Path, seed: int) -> Process:
    return Process(
        [str(_binary("fake-upstream")), "--sse", str(sse), "--seed", str(seed)],
        dict(os.environ),
        "stdout",
    )


@pytest.fixture(scope="session")
def gateway():
    proc = start_gateway(ROOT / "tests/python/sdk.yaml", {"TOLLGATE_TEST_MASTER_KEY": MASTER_KEY})
    yield {"url": proc.url, "key": MASTER_KEY}
    code, logs = proc.stop()
    assert code == 0, "the gateway exits cleanly on SIGTERM"
    # Checked once the process is gone, so that every access-log line is in.
    assert "chat_completions" in logs, logs
    assert "SIGTERM received" in logs, logs
    assert MASTER_KEY not in logs, "the master key leaked into the logs"
