"""AWS Bedrock through the gateway, read by the OpenAI Python SDK: a
`bedrock/` deployment translated to Converse / ConverseStream (the Amazon
Bedrock API Reference), against the testkit's Bedrock fake run as a process
(`fake-upstream --fake bedrock`), which recomputes every request's SigV4
signature, refuses a mismatch with AWS's 403, and answers by what is asked:
a text, a stream in AWS's binary event stream, a tool call, or a
ThrottlingException."""

import json
import os

import openai
import pytest

from conftest import Process, _binary, start_gateway

# The testkit's Bedrock credentials (tollgate_testkit::bedrock).
ACCESS_KEY_ID = "AKIATOLLGATETEST0042"
SECRET_ACCESS_KEY = "tollgate/Bedrock+Test/secret0123456789EXAMPLE"
SESSION_TOKEN = "FwoGZXIvYXdzEBYaDPythonSdkTestSessionToken"
TEXT = "The capital of France is Paris."
# The fake's usage: 30 uncached + 400 cache-read + 100 cache-write in, 12 out.
PROMPT_TOKENS, COMPLETION_TOKENS = 530, 12

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The forecast for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    fake = Process(
        [str(_binary("fake-upstream")), "--fake", "bedrock"], dict(os.environ), "stdout"
    )
    config = tmp_path_factory.mktemp("bedrock") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bedrock-claude\n"
        "    litellm_params:\n"
        "      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0\n"
        f"      aws_bedrock_runtime_endpoint: {fake.url}\n"
        "router_settings:\n"
        "  num_retries: 0\n"
    )
    # Credentials and region from AWS's usual variables, as LiteLLM reads them.
    gateway = start_gateway(
        config,
        {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN,
            "AWS_REGION": "us-east-1",
        },
    )
    yield openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    code, logs = gateway.stop()
    fake_code, _ = fake.stop()
    assert code == 0 and fake_code == 0
    for secret in (SECRET_ACCESS_KEY, ACCESS_KEY_ID, SESSION_TOKEN, "Signature="):
        assert secret not in logs, f"{secret!r} leaked into the gateway's logs"


def ask(text):
    return [{"role": "user", "content": text}]


def test_a_completion_has_bedrock_text_and_usage(client):
    answer = client.chat.completions.create(model="bedrock-claude", messages=ask("capital?"))
    assert answer.choices[0].message.content == TEXT
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
    )
    assert answer.usage.prompt_tokens_details.cached_tokens == 400


def test_a_stream_is_read_as_openai_chunks_with_usage_last(client):
    stream = client.chat.completions.create(
        model="bedrock-claude",
        messages=ask("capital?"),
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
        usage = chunk.usage or usage
    assert text == TEXT
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_tool_calls_arrive_whole_and_streamed(client):
    answer = client.chat.completions.create(
        model="bedrock-claude", messages=ask("weather?"), tools=TOOLS, tool_choice="auto"
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert answer.choices[0].finish_reason == "tool_calls"

    stream = client.chat.completions.create(
        model="bedrock-claude", messages=ask("weather?"), tools=TOOLS, stream=True
    )
    name, arguments, finish = None, "", None
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                name = delta.function.name or name
                arguments += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    assert name == "weather"
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


def test_throttling_is_a_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="bedrock-claude", messages=ask("please throttle"))
    assert raised.value.status_code == 429
    assert SECRET_ACCESS_KEY not in str(raised.value)
