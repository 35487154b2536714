"""Starts the `tollgate` binary (and, where a test needs one, the testkit's
fake upstream) on free loopback ports for the SDK tests."""

import json
import os
import pathlib
import re
import subprocess
import tempfile
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class LoopbackServer:
    """An HTTP server on a free loopback port, served from a thread of its
    own; `answer` turns each POST into `(status, headers, body)`."""

    def __init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, headers, payload = owner.answer(self.path, self.headers, body)
                data = payload.encode() if isinstance(payload, str) else payload
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path, headers, body):
        raise NotImplementedError

    def stop(self):
        self.server.shutdown()


class ScriptedUpstream(LoopbackServer):
    """An upstream that answers each request with the next scripted reply
    (or the default one once they run out) and records what it was sent: a
    provider's API scripted per test, as the testkit's `Upstream` is for the
    Rust tests."""

    def __init__(self):
        self.requests = []
        self.replies = []
        self.default = None
        self.lock = threading.Lock()
        super().__init__()

    def reset(self, *replies, default=None):
        """Forgets what was asked and scripts the next answers: each reply is
        `(status, json_body)` or `(status, content_type, text)`."""
        with self.lock:
            self.requests.clear()
            self.replies = list(replies)
            self.default = default

    def answer(self, path, headers, body):
        with self.lock:
            self.requests.append((path, dict(headers), json.loads(body or b"null")))
            if self.replies:
                reply = self.replies.pop(0)
            elif self.default is not None:
                reply = self.default
            else:
                reply = (500, {"error": {"message": "nothing scripted", "type": "server_error"}})
        if len(reply) == 2:
            reply = (reply[0], "application/json", json.dumps(reply[1]))
        status, content_type, text = reply
        return status, {"content-type": content_type}, text


def openai_completion(text: str) -> dict:
    """OpenAI's "chat completion object" (API reference, Chat Completions)."""
    return {
        "id": "chatcmpl-python-fallback",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }


def openai_deployment(group: str, model: str, upstream: ScriptedUpstream) -> str:
    """A `model_list` entry for an OpenAI-compatible deployment on `upstream`."""
    return (
        f"  - model_name: {group}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {upstream.url}/v1\n"
        f"      api_key: sk-{group}-python-test\n"
    )


def assert_answered_by(raw, group: str, text: str):
    """`raw`, a `with_raw_response` answer, is `text` from group `group`,
    reached by one fallback (the headers the gateway reports its path in)."""
    assert raw.parse().choices[0].message.content == text
    assert raw.headers["x-tollgate-model-group"] == group
    assert raw.headers["x-tollgate-attempted-fallbacks"] == "1"


def assert_completion(answer, text, usage, cached=None, finish="stop"):
    """`answer`, a parsed completion, says `text` and stops for `finish`;
    its usage is `usage`, (prompt, completion, total), with `cached` of
    the prompt tokens read from a cache where given."""
    assert answer.choices[0].message.content == text
    assert answer.choices[0].finish_reason == finish
    got = answer.usage
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == usage
    if cached is not None:
        assert got.prompt_tokens_details.cached_tokens == cached


def assert_response_cost(raw, expected, *priced):
    """`raw`'s `x-tollgate-response-cost` is `expected`: to the last digit,
    the sum over `priced`, each `(tokens, price of one token)` as the price
    snapshot writes the price."""
    cost = raw.headers["x-tollgate-response-cost"]
    assert Decimal(cost) == sum(tokens * Decimal(price) for tokens, price in priced)
    assert cost == expected


def openai_fallbacks(gpt: ScriptedUpstream, big: ScriptedUpstream, fallbacks: str, context_window: str) -> str:
    """The end of a config: `gpt` and `big` as OpenAI-compatible deployments
    on those upstreams, then `router_settings` with one retry, no wait and no
    cooldown (so that each test starts from healthy deployments), and the
    `fallbacks` and `context_window_fallbacks` lists written as given."""
    return (
        openai_deployment("gpt", "gpt-4o-mini", gpt)
        + openai_deployment("big", "gpt-4.1", big)
        + "router_settings:\n"
        "  num_retries: 1\n"
        "  retry_after: 0\n"
        "  cooldown_time: 0\n"
        f"  fallbacks: {fallbacks}\n"
        f"  context_window_fallbacks: {context_window}\n"
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
