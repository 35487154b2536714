"""Native providers through the gateway, read by the OpenAI Python SDK: an
Anthropic Messages stream (the events of Anthropic's "Streaming Messages"
reference, https://docs.anthropic.com/en/docs/build-with-claude/streaming),
cut at random byte boundaries by the testkit's fake upstream, translated
into OpenAI's chunks by the gateway's `anthropic/` deployment; then the error
classes of Anthropic and Azure OpenAI, each answered as its API does (the
bodies of Anthropic's "Errors" page, https://docs.anthropic.com/en/api/errors,
and its `stop_reason: "refusal"`,
https://docs.anthropic.com/en/docs/test-and-evaluate/strengthen-guardrails/handle-streaming-refusals;
Azure's from Microsoft's "Content filtering" page,
https://learn.microsoft.com/azure/ai-foundry/openai/concepts/content-filter,
and OpenAI's error codes) with an OpenAI-compatible upstream as the fallback."""

import json

import openai
import pytest

from conftest import (
    ROOT,
    ScriptedUpstream,
    assert_answered_by,
    openai_completion,
    openai_fallbacks,
    start_fake_upstream,
    start_gateway,
)

FIXTURE = ROOT / "tests/python/fixtures/anthropic_stream.sse"
ANTHROPIC_KEY = "sk-ant-api03-python-native-test-0123456789"
AZURE_KEY = "python-azure-test-key-0123456789abcdef"


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


def anthropic_error(kind, message):
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_python_native_test"}


def anthropic_message(content, stop_reason):
    return {
        "id": "msg_python_native", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5-20250929", "content": content,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 0},
    }


def azure_filter_error(category):
    results = {name: {"filtered": False, "severity": "safe"}
               for name in ("hate", "self_harm", "sexual", "violence")}
    results[category] = {"filtered": True, "severity": "high"}
    return {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                   "content management policy. Please modify your prompt and retry.",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation",
                       "content_filter_result": results},
    }}


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    """`claude` (Anthropic) and `azure-gpt` (Azure OpenAI), each on a scripted
    fake, with `gpt` as their fallback and `big` as their context-window
    fallback, both OpenAI-compatible."""
    claude, azure, gpt, big = (ScriptedUpstream() for _ in range(4))
    config = tmp_path_factory.mktemp("flows") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: claude\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5-20250929\n"
        f"      api_base: {claude.url}\n"
        "      api_key: os.environ/ANTHROPIC_API_KEY\n"
        "  - model_name: azure-gpt\n"
        "    litellm_params:\n"
        "      model: azure/my-gpt4o-deployment\n"
        f"      api_base: {azure.url}\n"
        "      api_version: 2024-10-21\n"
        "      api_key: os.environ/AZURE_API_KEY\n"
        + openai_fallbacks(
            gpt,
            big,
            "[{claude: [gpt]}, {azure-gpt: [gpt]}]",
            "[{claude: [big]}, {azure-gpt: [big]}]",
        )
    )
    gateway = start_gateway(config, {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "AZURE_API_KEY": AZURE_KEY})
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield client, {"claude": claude, "azure-gpt": azure, "gpt": gpt, "big": big}
    code, logs = gateway.stop()
    for upstream in (claude, azure, gpt, big):
        upstream.stop()
    assert code == 0
    assert ANTHROPIC_KEY not in logs and AZURE_KEY not in logs, "a key leaked into the logs"


def ask(client, model):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "What is the capital of France?"}]
    )


def assert_native_request(group, upstream):
    """Each request went to the provider's own route with its own key header."""
    for path, headers, _ in upstream.requests:
        if group == "claude":
            assert path == "/v1/messages", path
            assert headers.get("x-api-key") == ANTHROPIC_KEY
        else:
            assert path == "/openai/deployments/my-gpt4o-deployment/chat/completions?api-version=2024-10-21", path
            assert headers.get("api-key") == AZURE_KEY


@pytest.mark.parametrize("group, status, body", [
    ("claude", 529, anthropic_error("overloaded_error", "Overloaded")),
    ("claude", 429, anthropic_error("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")),
    ("azure-gpt", 429, {"error": {
        "message": "Requests to the ChatCompletions_Create Operation have exceeded call rate limit.",
        "type": "rate_limit_exceeded", "param": None, "code": "429"}}),
])
def test_a_rate_limited_or_overloaded_provider_is_retried_then_answered_by_the_fallback(flows, group, status, body):
    client, upstreams = flows
    for upstream in upstreams.values():
        upstream.reset()
    upstreams[group].reset(default=(status, body))
    upstreams["gpt"].reset((200, openai_completion("from the fallback")))

    raw = ask(client, group)
    assert_answered_by(raw, "gpt", "from the fallback")
    # Retryable: asked again before the fallback answered.
    assert len(upstreams[group].requests) == 2
    assert len(upstreams["gpt"].requests) == 1
    assert not upstreams["big"].requests
    assert_native_request(group, upstreams[group])


@pytest.mark.parametrize("group, body", [
    ("claude", anthropic_error("invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum")),
    ("azure-gpt", {"error": {
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}),
])
def test_a_context_window_error_goes_to_the_context_window_fallbacks(flows, group, body):
    client, upstreams = flows
    for upstream in upstreams.values():
        upstream.reset()
    upstreams[group].reset(default=(400, body))
    upstreams["big"].reset((200, openai_completion("the long answer")))

    raw = ask(client, group)
    assert_answered_by(raw, "big", "the long answer")
    # Not retried (the prompt will not shrink), not sent to `fallbacks`.
    assert len(upstreams[group].requests) == 1
    assert len(upstreams["big"].requests) == 1
    assert not upstreams["gpt"].requests
    assert_native_request(group, upstreams[group])


def sse(*events):
    """Server-sent events: `(name, data)` as Anthropic writes them (an
    `event:` line), or bare `data` as OpenAI and Azure do."""
    out = ""
    for event in events:
        if isinstance(event, tuple):
            out += f"event: {event[0]}\n"
            event = event[1]
        out += "data: " + (event if isinstance(event, str) else json.dumps(event)) + "\n\n"
    return (200, "text/event-stream", out)


def claude_refusal_stream():
    """Claude declining before a word: `message_start`, then
    `stop_reason: "refusal"` in `message_delta`."""
    message = anthropic_message([], None)
    return sse(
        ("message_start", {"type": "message_start", "message": message}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "refusal", "stop_sequence": None},
                           "usage": {"output_tokens": 0}}),
        ("message_stop", {"type": "message_stop"}),
    )


def azure_filtered_completion(category):
    body = openai_completion("")
    choice = body["choices"][0]
    choice["message"]["content"] = None
    choice["finish_reason"] = "content_filter"
    choice["content_filter_results"] = azure_filter_error(category)["error"]["innererror"]["content_filter_result"]
    return (200, body)


def azure_filtered_stream(category):
    """Azure's stream: the prompt's filter results first (no choices), then
    the answer stopped with `finish_reason: "content_filter"`."""
    results = azure_filter_error(category)["error"]["innererror"]["content_filter_result"]
    chunk = {"id": "chatcmpl-azure", "object": "chat.completion.chunk", "created": 1_700_000_000,
             "model": "gpt-4o", "choices": []}
    prompt = dict(chunk, id="", object="", created=0, model="",
                  prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {}}])
    stopped = dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": "content_filter",
                                    "content_filter_results": results}])
    return sse(prompt, stopped, "[DONE]")


@pytest.mark.parametrize("group, reply, stream, code, reason", [
    ("claude", (200, anthropic_message([], "refusal")), False, "refusal", "refusal"),
    ("claude", claude_refusal_stream(), True, "refusal", "refusal"),
    ("azure-gpt", (400, azure_filter_error("violence")), False, "content_filter", "violence"),
    ("azure-gpt", azure_filtered_completion("hate"), False, "content_filter", "hate"),
    ("azure-gpt", azure_filtered_stream("sexual"), True, "content_filter", "sexual"),
])
def test_a_refusal_reaches_the_sdk_with_its_reason_and_no_fallback_hides_it(flows, group, reply, stream, code, reason):
    client, upstreams = flows
    for upstream in upstreams.values():
        upstream.reset(default=(200, openai_completion("a fallback must not answer")))
    upstreams[group].reset(default=reply)

    with pytest.raises(openai.BadRequestError) as raised:
        answer = client.chat.completions.create(
            model=group, messages=[{"role": "user", "content": "Something refused"}], stream=stream
        )
        for _ in answer if stream else ():
            pass
    error = raised.value
    assert error.status_code == 400
    assert error.code == code, error.body
    assert reason in error.message, error.body
    assert ANTHROPIC_KEY not in str(error.body) and AZURE_KEY not in str(error.body)
    # Asked once (a refusal is not retried), and no fallback answered.
    assert len(upstreams[group].requests) == 1
    assert not upstreams["gpt"].requests and not upstreams["big"].requests
    assert_native_request(group, upstreams[group])
