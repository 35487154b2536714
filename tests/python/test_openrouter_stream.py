"""An OpenRouter stream, cut at random byte boundaries by a testkit upstream,
through the gateway's OpenRouter normalizer, read by the OpenAI Python SDK."""

import json

import openai
import pytest

from conftest import ROOT, start_fake_upstream, start_gateway

FIXTURE = ROOT / "crates/tollgate-openrouter/tests/fixtures/openrouter/stream_success.sse"
OPENROUTER_KEY = "sk-or-v1-python-test-0123456789"


def expected_text() -> str:
    text = ""
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[len("data: "):])
            for choice in chunk.get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
    return text


@pytest.fixture(scope="module", params=[1, 2, 3])
def openrouter_gateway(request, tmp_path_factory):
    upstream = start_fake_upstream(FIXTURE, seed=request.param)
    config = tmp_path_factory.mktemp("openrouter") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: deepseek-chat\n"
        "    litellm_params:\n"
        "      model: openrouter/deepseek/deepseek-chat:free\n"
        f"      api_base: {upstream.url}/api/v1\n"
        "      api_key: os.environ/OPENROUTER_API_KEY\n"
    )
    gateway = start_gateway(config, {"OPENROUTER_API_KEY": OPENROUTER_KEY})
    yield gateway.url
    code, logs = gateway.stop()
    upstream.stop()
    assert code == 0
    assert OPENROUTER_KEY not in logs


def test_the_sdk_reads_the_normalised_stream(openrouter_gateway):
    client = openai.OpenAI(base_url=openrouter_gateway + "/v1", api_key="unused", max_retries=0)
    want = expected_text()
    assert want
    # The upstream cuts its first 16 answers differently each time.
    for _ in range(8):
        stream = client.chat.completions.create(
            model="deepseek-chat",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            stream=True,
        )
        text = ""
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
        assert text == want
