"""Starts the `tollgate` binary on a free loopback port for the SDK tests."""

import os
import pathlib
import re
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-tollgate-python-test-key"


def _binary() -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / "tollgate"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build -p tollgate-gateway` first")
    return path


@pytest.fixture(scope="session")
def gateway():
    env = dict(os.environ, TOLLGATE_TEST_MASTER_KEY=MASTER_KEY, RUST_LOG="info")
    proc = subprocess.Popen(
        [
            str(_binary()),
            "--config",
            str(ROOT / "tests/python/sdk.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--log-format",
            "text",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = None
    lines = []
    # The gateway logs the address it bound (port 0 picks a free one); read
    # until it does. readline blocks on the pipe, not on a clock.
    for line in proc.stderr:
        lines.append(line)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if match:
            url = match.group(1)
            break
    if url is None:
        proc.kill()
        raise RuntimeError("the gateway did not start:\n" + "".join(lines))
    # Keep draining stderr so the gateway never blocks on a full pipe.
    drain = threading.Thread(target=lambda: [lines.append(l) for l in proc.stderr], daemon=True)
    drain.start()
    yield {"url": url, "key": MASTER_KEY}
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "the gateway exits cleanly on SIGTERM"
    drain.join(timeout=30)
    logs = "".join(lines)
    # Checked once the process is gone, so that every access-log line is in.
    assert "chat_completions" in logs, logs
    assert "SIGTERM received" in logs, logs
    assert MASTER_KEY not in logs, "the master key leaked into the logs"
