"""A native provider through the gateway, read by the OpenAI Python SDK: an
Anthropic Messages stream (the events of Anthropic's "Streaming Messages"
reference, https://docs.anthropic.com/en/docs/build-with-claude/streaming),
cut at random byte boundaries by the testkit's fake upstream, translated
into OpenAI's chunks by the gateway's `anthropic/` deployment."""

import json

import openai
import pytest

from conftest import ROOT, start_fake_upstream, start_gateway

FIXTURE = ROOT / "tests/python/fixtures/anthropic_stream.sse"
ANTHROPIC_KEY = "sk-ant-api03-python-native-test-0123456789"


def expected_text() -> str:
    text = ""
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("data: "):
            event = json.loads(line[len("data: "):])
            if event.get("type") == "content_block_delta":
                text += event["delta"].get("text", "")
    return text


@pytest.fixture(scope="module", params=[1, 2])
def anthropic_gateway(request, tmp_path_factory):
    upstream = start_fake_upstream(FIXTURE, seed=request.param)
    config = tmp_path_factory.mktemp("anthropic") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: claude\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5-20250929\n"
        f"      api_base: {upstream.url}\n"
        "      api_key: os.environ/ANTHROPIC_API_KEY\n"
    )
    gateway = start_gateway(config, {"ANTHROPIC_API_KEY": ANTHROPIC_KEY})
    yield gateway.url
    code, logs = gateway.stop()
    upstream.stop()
    assert code == 0
    assert ANTHROPIC_KEY not in logs, "the Anthropic key leaked into the logs"


def test_the_sdk_reads_an_anthropic_stream_as_openai_chunks(anthropic_gateway):
    client = openai.OpenAI(base_url=anthropic_gateway + "/v1", api_key="unused", max_retries=0)
    want = expected_text()
    assert want == "The capital of France is Paris, on the Seine."
    for _ in range(6):
        stream = client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage = "", None, None
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
            usage = chunk.usage or usage
        assert text == want
        assert finish == "stop"
        # Anthropic's numbers: 25 in, 15 out.
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (25, 15)
