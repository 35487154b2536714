"""AWS Bedrock through the gateway, read by the OpenAI Python SDK: a
`bedrock/` deployment translated to Converse / ConverseStream (the Amazon
Bedrock API Reference), against the testkit's Bedrock fake run as a process
(`fake-upstream --fake bedrock`), which recomputes every request's SigV4
signature, refuses a mismatch with AWS's 403, and answers by what is asked:
a text, a stream in AWS's binary event stream, a tool call, a
ThrottlingException or a "too long" ValidationException. Then the error
classes: throttling retried then answered by a fallback on another provider,
a too-long input sent to `context_window_fallbacks`, and a guardrail's
intervention reaching the client as a refusal with its reason (a Converse
answer with `stopReason: "guardrail_intervened"`, from the API Reference's
Converse response and "Stop a model response with guardrails",
https://docs.aws.amazon.com/bedrock/latest/userguide/guardrails-use-converse-api.html,
served by a scripted upstream: the testkit's fake has no guardrail to
trigger)."""

import http.client
import json
import os
from urllib.parse import quote

import openai
import pytest

from conftest import (
    LoopbackServer,
    Process,
    ScriptedUpstream,
    assert_answered_by,
    assert_completion,
    assert_response_cost,
    _binary,
    openai_completion,
    openai_fallbacks,
    start_gateway,
)

MODEL_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
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


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
    "AWS_REGION": "us-east-1",
}


def start_bedrock_fake():
    return Process(
        [str(_binary("fake-upstream")), "--fake", "bedrock"], dict(os.environ), "stdout"
    )


class CountingProxy(LoopbackServer):
    """Forwards each request, Host header and all (so that its signature
    still holds), to the testkit's fake and counts what went through: the
    fake runs as a process and keeps its count to itself."""

    HOP_BY_HOP = ("content-length", "transfer-encoding", "connection", "date", "server")

    def __init__(self, target):
        self.paths = []
        self.target = target.removeprefix("http://").split(":")
        super().__init__()

    def answer(self, path, headers, body):
        self.paths.append(path)
        host, port = self.target
        upstream = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            upstream.request("POST", path, body, dict(headers))
            reply = upstream.getresponse()
            kept = {k: v for k, v in reply.getheaders() if k.lower() not in self.HOP_BY_HOP}
            return reply.status, kept, reply.read()
        finally:
            upstream.close()


def assert_no_aws_secret_in(logs):
    for secret in (SECRET_ACCESS_KEY, ACCESS_KEY_ID, SESSION_TOKEN, "Signature="):
        assert secret not in logs, f"{secret!r} leaked into the gateway's logs"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    fake = start_bedrock_fake()
    config = tmp_path_factory.mktemp("bedrock") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bedrock-claude\n"
        "    litellm_params:\n"
        "      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0\n"
        f"      aws_bedrock_runtime_endpoint: {fake.url}\n"
        "  - model_name: titan\n"
        "    litellm_params:\n"
        "      model: bedrock/amazon.titan-embed-text-v2:0\n"
        f"      aws_bedrock_runtime_endpoint: {fake.url}\n"
        "  - model_name: cohere\n"
        "    litellm_params:\n"
        "      model: bedrock/cohere.embed-english-v3\n"
        f"      aws_bedrock_runtime_endpoint: {fake.url}\n"
        "router_settings:\n"
        "  num_retries: 0\n"
    )
    # Credentials and region from AWS's usual variables, as LiteLLM reads them.
    gateway = start_gateway(config, AWS_ENV)
    yield openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    code, logs = gateway.stop()
    fake_code, _ = fake.stop()
    assert code == 0 and fake_code == 0
    assert_no_aws_secret_in(logs)


def ask(text):
    return [{"role": "user", "content": text}]


def test_a_completion_has_bedrock_text_and_usage(client):
    raw = client.chat.completions.with_raw_response.create(model="bedrock-claude", messages=ask("capital?"))
    assert_completion(raw.parse(), TEXT, (PROMPT_TOKENS, COMPLETION_TOKENS, 542), cached=400)
    # LiteLLM's prices for anthropic.claude-3-5-sonnet-20240620-v1:0 (the
    # snapshot): 3e-06 in, 3e-07 a cache read, 3.75e-06 a cache write,
    # 1.5e-05 out: 30 × 3e-06 + 400 × 3e-07 + 100 × 3.75e-06 + 12 × 1.5e-05.
    assert_response_cost(
        raw, "0.000765", (30, "3e-06"), (400, "3e-07"), (100, "3.75e-06"), (12, "1.5e-05")
    )


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


def test_embeddings_through_titan_a_call_a_text_and_cohere_with_its_header_count(client):
    # The fake embeds a text as [its length, 0.5] (Titan) or [its length,
    # 0.25] (Cohere), a token a character; every InvokeModel call signed.
    raw = client.embeddings.with_raw_response.create(model="titan", input=["Hello", "Bonjour!"])
    response = raw.parse()
    assert [e.embedding for e in response.data] == [[5.0, 0.5], [8.0, 0.5]]
    assert response.usage.prompt_tokens == 13
    # LiteLLM's 2e-08 for amazon.titan-embed-text-v2:0.
    assert_response_cost(raw, "0.00000026", (13, "2e-08"))

    raw = client.embeddings.with_raw_response.create(
        model="cohere", input=["abc", "de"], encoding_format="float")
    response = raw.parse()
    assert [e.embedding for e in response.data] == [[3.0, 0.25], [2.0, 0.25]]
    # From X-Amzn-Bedrock-Input-Token-Count, at 1e-07.
    assert response.usage.prompt_tokens == 5
    assert_response_cost(raw, "0.0000005", (5, "1e-07"))


def test_throttling_is_a_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="bedrock-claude", messages=ask("please throttle"))
    assert raised.value.status_code == 429
    assert SECRET_ACCESS_KEY not in str(raised.value)


@pytest.fixture(scope="module")
def with_fallbacks(tmp_path_factory):
    """`bedrock-claude` on the testkit's fake (which checks every signature)
    and `bedrock-guarded` on a scripted upstream, with `gpt` as their
    fallback and `big` as their context-window fallback (OpenAI-compatible)."""
    fake = start_bedrock_fake()
    proxy = CountingProxy(fake.url)
    guarded, gpt, big = ScriptedUpstream(), ScriptedUpstream(), ScriptedUpstream()
    config = tmp_path_factory.mktemp("bedrock-fallbacks") / "config.yaml"
    bedrock = (
        "  - model_name: {group}\n"
        "    litellm_params:\n"
        f"      model: bedrock/{MODEL_ID}\n"
        "      aws_bedrock_runtime_endpoint: {url}\n"
    )
    config.write_text(
        "model_list:\n"
        + bedrock.format(group="bedrock-claude", url=proxy.url)
        + bedrock.format(group="bedrock-guarded", url=guarded.url)
        + openai_fallbacks(
            gpt,
            big,
            "[{bedrock-claude: [gpt]}, {bedrock-guarded: [gpt]}]",
            "[{bedrock-claude: [big]}]",
        )
    )
    gateway = start_gateway(config, AWS_ENV)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)

    def reset():
        proxy.paths.clear()
        for upstream in (guarded, gpt, big):
            upstream.reset(default=(200, openai_completion(f"from {upstream.url}")))

    yield client, proxy, guarded, gpt, big, reset
    code, logs = gateway.stop()
    proxy.stop()
    fake_code, _ = fake.stop()
    for upstream in (guarded, gpt, big):
        upstream.stop()
    assert code == 0 and fake_code == 0
    assert_no_aws_secret_in(logs)


def test_throttling_is_retried_then_answered_by_a_fallback_on_another_provider(with_fallbacks):
    client, proxy, _, gpt, big, reset = with_fallbacks
    reset()
    gpt.reset((200, openai_completion("from the fallback")))
    raw = client.chat.completions.with_raw_response.create(
        model="bedrock-claude", messages=ask("please throttle")
    )
    assert_answered_by(raw, "gpt", "from the fallback")
    # Throttling is retryable: Bedrock was asked again before the fallback.
    assert len(proxy.paths) == 2
    assert len(gpt.requests) == 1 and not big.requests


def test_a_too_long_input_goes_to_the_context_window_fallbacks(with_fallbacks):
    client, proxy, _, gpt, big, reset = with_fallbacks
    reset()
    big.reset((200, openai_completion("from the big model")))
    raw = client.chat.completions.with_raw_response.create(
        model="bedrock-claude", messages=ask("this is too long")
    )
    assert_answered_by(raw, "big", "from the big model")
    # Not retried (the same input is as long the second time), not sent to
    # the regular fallbacks.
    assert len(proxy.paths) == 1
    assert len(big.requests) == 1 and not gpt.requests


def guardrail_converse(message):
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": message}]}},
        "stopReason": "guardrail_intervened",
        "usage": {"inputTokens": 30, "outputTokens": 0, "totalTokens": 30},
        "metrics": {"latencyMs": 120},
    }


def test_a_guardrail_intervention_reaches_the_sdk_as_a_refusal_with_its_reason(with_fallbacks):
    client, _, guarded, gpt, big, reset = with_fallbacks
    reset()
    guarded.reset(default=(200, guardrail_converse(
        "Sorry, this request is blocked by the travel-policy guardrail.")))
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="bedrock-guarded", messages=ask("capital?"))
    error = raised.value
    assert error.status_code == 400
    assert error.code == "content_filter", error.body
    assert "guardrail_intervened" in error.message, error.body
    assert "travel-policy guardrail" in error.message, error.body
    assert SECRET_ACCESS_KEY not in str(error.body)
    # Asked once, signed, on Converse's route; no fallback hid the refusal.
    [(path, headers, _)] = guarded.requests
    # The model id percent-encoded in its path segment, as AWS signs it.
    assert path == f"/model/{quote(MODEL_ID, safe='')}/converse", path
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + ACCESS_KEY_ID)
    assert not gpt.requests and not big.requests
