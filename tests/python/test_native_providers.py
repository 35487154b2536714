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
and OpenAI's error codes) with an OpenAI-compatible upstream as the fallback;
last, each provider's completion (text, finish_reason, usage and the exact
`x-tollgate-response-cost` from the price snapshot), stream (Azure's chunks,
https://learn.microsoft.com/azure/ai-foundry/openai/reference, ending in
`[DONE]`) and tool calls round-tripped as JSON and as a stream (Anthropic's
"Tool use" reference, https://docs.anthropic.com/en/docs/build-with-claude/tool-use)."""

import json

import openai
import pytest

from conftest import (
    ROOT,
    ScriptedUpstream,
    assert_answered_by,
    assert_completion,
    assert_response_cost,
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
    fallback, both OpenAI-compatible; `azure-4o`, Azure's `gpt-4o`
    deployment, on the same fake as `azure-gpt`."""
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
        # A deployment named after its model, so that the snapshot prices it.
        "  - model_name: azure-4o\n"
        "    litellm_params:\n"
        "      model: azure/gpt-4o\n"
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


# ---- Completions, streams and tool calls (issue 14, acceptance 2) ----

WEATHER_TOOL = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}}]

# Anthropic's `usage` (Messages API reference, "Prompt caching"): 25
# uncached, 1000 written to and 2000 read from the cache, 15 out.
ANTHROPIC_USAGE = {"input_tokens": 25, "cache_creation_input_tokens": 1000,
                   "cache_read_input_tokens": 2000, "output_tokens": 15}


def claude_message(content, stop_reason):
    return dict(anthropic_message(content, stop_reason), usage=ANTHROPIC_USAGE)


def claude_stream(*blocks, stop_reason):
    """A Messages stream: `message_start`, each block as
    `(index, type, id-or-None, name-or-None, parts)`, then the final
    `message_delta` and `message_stop` (the "Streaming Messages" events)."""
    message = dict(claude_message([], None), usage=dict(ANTHROPIC_USAGE, output_tokens=1))
    events = [("message_start", {"type": "message_start", "message": message}),
              ("ping", {"type": "ping"})]
    for index, kind, call_id, name, parts in blocks:
        if kind == "text":
            block, delta = {"type": "text", "text": ""}, lambda p: {"type": "text_delta", "text": p}
        else:
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            delta = lambda p: {"type": "input_json_delta", "partial_json": p}
        events.append(("content_block_start",
                       {"type": "content_block_start", "index": index, "content_block": block}))
        events += [("content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta(p)}) for p in parts]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": 15}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return sse(*events)


def azure_chunk(delta, finish=None, **extra):
    """One chunk of Azure's stream (OpenAI's "chat completion chunk object")."""
    return dict({"id": "chatcmpl-azure", "object": "chat.completion.chunk",
                 "created": 1_700_000_000, "model": "gpt-4o-2024-08-06",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, **extra)


def azure_stream(*chunks):
    """Azure's stream: the prompt's filter results first (no choices), then
    `chunks`, then `[DONE]`."""
    prompt = {"id": "", "object": "", "created": 0, "model": "", "choices": [],
              "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    return sse(prompt, *chunks, "[DONE]")


def reset(upstreams):
    for upstream in upstreams.values():
        upstream.reset()


def read_stream(stream):
    """The text, the tool calls put together from their deltas (id, name,
    arguments per index), the last finish_reason and the usage of an SDK
    stream."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, ["", "", ""])
                entry[0] = call.id or entry[0]
                entry[1] = (call.function and call.function.name) or entry[1]
                entry[2] += (call.function and call.function.arguments) or ""
        usage = chunk.usage or usage
    return text, [tuple(calls[i]) for i in sorted(calls)], finish, usage


def raw_sse_data(client, **body):
    """The `data:` lines of a stream as the gateway wrote them."""
    with client.chat.completions.with_streaming_response.create(stream=True, **body) as response:
        return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def tool_history(call_id):
    """The question, the assistant's call of `get_weather` and its result."""
    return QUESTION + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call_id, "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21"},
    ]


def test_an_anthropic_completion_has_its_text_usage_and_exact_cost(flows):
    client, upstreams = flows
    reset(upstreams)
    upstreams["claude"].reset((200, claude_message([{"type": "text", "text": "Hello there"}], "end_turn")))

    raw = ask(client, "claude")
    # Anthropic's numbers: every input token (uncached, written, read) is a
    # prompt token, the cache reads are the cached ones.
    assert_completion(raw.parse(), "Hello there", (3025, 15, 3040), cached=2000)
    # LiteLLM's prices for claude-sonnet-4-5-20250929 (the snapshot): 3e-06
    # in, 3e-07 a cache read, 3.75e-06 a cache write, 1.5e-05 out.
    assert_response_cost(
        raw, "0.00465", (25, "3e-06"), (2000, "3e-07"), (1000, "3.75e-06"), (15, "1.5e-05")
    )
    assert len(upstreams["claude"].requests) == 1
    assert_native_request("claude", upstreams["claude"])


def test_an_anthropic_tool_call_round_trips_as_json_and_as_a_stream(flows):
    client, upstreams = flows
    reset(upstreams)
    upstreams["claude"].reset(
        (200, claude_message([
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
        ], "tool_use")),
        (200, claude_message([{"type": "text", "text": "Sunny, 21 C."}], "end_turn")),
        claude_stream((0, "text", None, None, ["Let me", " check."]),
                      (1, "tool_use", "toolu_02", "get_weather", ['{"ci', 'ty": "Par', 'is"}']),
                      stop_reason="tool_use"),
    )

    answer = client.chat.completions.create(model="claude", messages=QUESTION, tools=WEATHER_TOOL)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == ("toolu_01", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # Anthropic got the tool in its own shape.
    sent = upstreams["claude"].requests[0][2]
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]

    # The result goes back as Anthropic's `tool_use` and `tool_result` blocks.
    answer = client.chat.completions.create(model="claude", messages=tool_history("toolu_01"), tools=WEATHER_TOOL)
    assert answer.choices[0].message.content == "Sunny, 21 C."
    assert answer.choices[0].finish_reason == "stop"
    sent = upstreams["claude"].requests[1][2]
    assert sent["messages"][1]["content"][0]["type"] == "tool_use"
    assert sent["messages"][1]["content"][0]["input"] == {"city": "Paris"}
    assert sent["messages"][2]["content"][0]["type"] == "tool_result"
    assert sent["messages"][2]["content"][0]["tool_use_id"] == "toolu_01"

    # Streamed: `input_json_delta`s become `tool_calls` argument deltas.
    text, calls, finish, usage = read_stream(client.chat.completions.create(
        model="claude", messages=QUESTION, tools=WEATHER_TOOL, stream=True,
        stream_options={"include_usage": True}))
    assert text == "Let me check."
    assert finish == "tool_calls"
    assert [(call_id, name) for call_id, name, _ in calls] == [("toolu_02", "get_weather")]
    assert json.loads(calls[0][2]) == {"city": "Paris"}
    assert (usage.prompt_tokens, usage.completion_tokens) == (3025, 15)
    assert len(upstreams["claude"].requests) == 3
    assert_native_request("claude", upstreams["claude"])


def azure_completion(text, prompt_tokens, completion_tokens):
    body = openai_completion(text)
    body["model"] = "gpt-4o-2024-08-06"
    body["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                     "total_tokens": prompt_tokens + completion_tokens}
    return (200, body)


def test_an_azure_completion_has_its_text_usage_and_exact_cost(flows):
    client, upstreams = flows
    reset(upstreams)
    upstreams["azure-gpt"].reset(azure_completion("hello from azure", 1200, 300))

    raw = ask(client, "azure-4o")
    assert_completion(raw.parse(), "hello from azure", (1200, 300, 1500))
    # LiteLLM's prices for azure/gpt-4o (the snapshot): 2.5e-06 in, 1e-05 out.
    assert_response_cost(raw, "0.006", (1200, "2.5e-06"), (300, "1e-05"))
    path, headers, _ = upstreams["azure-gpt"].requests[0]
    assert path == "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    assert headers.get("api-key") == AZURE_KEY


def test_an_azure_stream_has_the_providers_text_and_ends_with_done(flows):
    client, upstreams = flows
    parts = ["The capital ", "of France ", "is Paris."]
    stream = azure_stream(
        azure_chunk({"role": "assistant", "content": ""}),
        *(azure_chunk({"content": part}) for part in parts),
        azure_chunk({}, "stop"),
        dict(azure_chunk({}), choices=[],
             usage={"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}),
    )
    reset(upstreams)
    upstreams["azure-gpt"].reset(default=stream)
    body = {"model": "azure-gpt", "messages": [{"role": "user", "content": "Capital of France?"}],
            "stream_options": {"include_usage": True}}

    text, calls, finish, usage = read_stream(client.chat.completions.create(stream=True, **body))
    assert text == "".join(parts)
    assert not calls
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (14, 7, 21)
    # As the gateway wrote it: Azure's chunks, then `[DONE]` last.
    data = raw_sse_data(client, **body)
    assert data[-1] == "[DONE]"
    assert "".join(choice["delta"].get("content") or ""
                   for chunk in data[:-1] for choice in json.loads(chunk)["choices"]) == "".join(parts)
    assert len(upstreams["azure-gpt"].requests) == 2
    assert all(request[2]["stream"] is True for request in upstreams["azure-gpt"].requests)
    assert_native_request("azure-gpt", upstreams["azure-gpt"])


def test_an_azure_tool_call_round_trips_as_json_and_as_a_stream(flows):
    client, upstreams = flows
    reset(upstreams)
    called = openai_completion("")
    called["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    called["choices"][0]["finish_reason"] = "tool_calls"
    upstreams["azure-gpt"].reset(
        (200, called),
        (200, openai_completion("Sunny, 21 C.")),
        azure_stream(
            azure_chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": ""}}]}),
            azure_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            azure_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            azure_chunk({}, "tool_calls"),
        ),
    )

    answer = client.chat.completions.create(model="azure-gpt", messages=QUESTION, tools=WEATHER_TOOL)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "get_weather", '{"city":"Paris"}')
    # Azure takes OpenAI's tools as they are.
    assert upstreams["azure-gpt"].requests[0][2]["tools"] == WEATHER_TOOL

    # The result goes back as OpenAI's `tool` message.
    answer = client.chat.completions.create(model="azure-gpt", messages=tool_history("call_1"), tools=WEATHER_TOOL)
    assert answer.choices[0].message.content == "Sunny, 21 C."
    sent = upstreams["azure-gpt"].requests[1][2]
    assert sent["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21"}

    text, calls, finish, _ = read_stream(client.chat.completions.create(
        model="azure-gpt", messages=QUESTION, tools=WEATHER_TOOL, stream=True))
    assert text == ""
    assert finish == "tool_calls"
    assert calls == [("call_2", "get_weather", '{"city":"Paris"}')]
    assert len(upstreams["azure-gpt"].requests) == 3
    assert_native_request("azure-gpt", upstreams["azure-gpt"])
