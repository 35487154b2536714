"""The official SDKs of the inbound APIs against the gateway binary: the
Anthropic Python SDK on `/v1/messages` (streaming and not, tool use) in
front of an OpenAI-compatible model group and an Anthropic one, and the
OpenAI SDK's `client.responses.create` on `/v1/responses` (streaming and
not): passed through to an `openai/` group's own Responses API, and bridged
through chat for an OpenAI-compatible one.

The upstreams are fakes on loopback: a small scripted server below speaking
OpenAI's chat completions (shapes from OpenAI's API reference, "Chat") and
OpenAI's Responses API (reference "Responses" → "The response object" and
"Streaming events", https://platform.openai.com/docs/api-reference/responses),
Anthropic's Messages API (reference "Messages" and "Streaming Messages",
https://docs.anthropic.com/en/api/messages and
https://docs.anthropic.com/en/docs/build-with-claude/streaming), and the
testkit's `fake-upstream` serving Anthropic's recorded stream."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import openai
import pytest

from conftest import ROOT, assert_response_cost, start_fake_upstream, start_gateway

MASTER_KEY = "sk-tollgate-inbound-python-master-key"
UPSTREAM_KEY = "sk-upstream-inbound-python-key-0123456789"
FIXTURE = ROOT / "tests/python/fixtures/anthropic_stream.sse"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def sse(events):
    """OpenAI-style `data:` events, or Anthropic's named ones."""
    out = ""
    for event in events:
        if isinstance(event, tuple):
            out += f"event: {event[0]}\ndata: {json.dumps(event[1])}\n\n"
        else:
            out += f"data: {json.dumps(event)}\n\n"
    return out


def openai_answer(request):
    """A chat answer: a tool call when tools are offered and no result came
    back yet, else text."""
    wants_tool = request.get("tools") and not any(
        m.get("role") == "tool" for m in request["messages"]
    )
    base = {"id": "chatcmpl-fake", "created": 1700000000, "model": "fake-gpt"}
    usage = {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15}
    if not request.get("stream"):
        message = {"role": "assistant", "content": "Sunny in Paris."}
        finish = "stop"
        if wants_tool:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather",
                                             "arguments": "{\"city\": \"Paris\"}"}}],
            }
            finish = "tool_calls"
        body = dict(base, object="chat.completion", usage=usage,
                    choices=[{"index": 0, "message": message, "finish_reason": finish}])
        return "application/json", json.dumps(body)

    def chunk(delta, finish=None):
        return dict(base, object="chat.completion.chunk",
                    choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    events = [chunk({"role": "assistant", "content": ""})]
    if wants_tool:
        events += [
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "get_weather", "arguments": ""}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\": "}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            chunk({}, "tool_calls"),
        ]
    else:
        events += [chunk({"content": "Sunny "}), chunk({"content": "in Paris."}), chunk({}, "stop")]
    events.append(dict(base, object="chat.completion.chunk", choices=[], usage=usage))
    return "text/event-stream", sse(events) + "data: [DONE]\n\n"


def responses_answer(request):
    """OpenAI's own Responses API: a response object, or its typed events
    (each named, with its `type` and `sequence_number`, the last
    `response.completed`, no `[DONE]`)."""
    usage = {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": 15}
    text = "Sunny in Paris."
    item = {"type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}

    def response(status, output, usage):
        return {"id": "resp_fake", "object": "response", "created_at": 1741476542,
                "status": status, "error": None, "incomplete_details": None,
                "instructions": request.get("instructions"), "model": "gpt-4.1-2025-04-14",
                "output": output, "parallel_tool_calls": True,
                "previous_response_id": request.get("previous_response_id"),
                "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                "usage": usage, "metadata": {}}

    if not request.get("stream"):
        return "application/json", json.dumps(response("completed", [item], usage))
    part = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
    events = [
        ("response.created", {"response": response("in_progress", [], None)}),
        ("response.in_progress", {"response": response("in_progress", [], None)}),
        ("response.output_item.added", {"output_index": 0, "item": dict(
            item, status="in_progress", content=[])}),
        ("response.content_part.added", dict(part, part={
            "type": "output_text", "text": "", "annotations": []})),
        ("response.output_text.delta", dict(part, delta="Sunny ", logprobs=[])),
        ("response.output_text.delta", dict(part, delta="in Paris.", logprobs=[])),
        ("response.output_text.done", dict(part, text=text, logprobs=[])),
        ("response.content_part.done", dict(part, part=item["content"][0])),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": response("completed", [item], usage)}),
    ]
    numbered = [(name, dict(data, type=name, sequence_number=n))
                for n, (name, data) in enumerate(events)]
    return "text/event-stream", sse(numbered)


def anthropic_answer(request):
    usage = {"input_tokens": 25, "output_tokens": 15}
    message = {"id": "msg_fake", "type": "message", "role": "assistant",
               "model": "claude-sonnet-4-5-20250929", "stop_sequence": None}
    if not request.get("stream"):
        body = dict(message, content=[{"type": "text", "text": "Bonjour."}],
                    stop_reason="end_turn", usage=usage)
        return "application/json", json.dumps(body)
    return "text/event-stream", FIXTURE.read_text()


class Fake(BaseHTTPRequestHandler):
    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Fake.seen.append((self.path, dict(self.headers), body))
        if self.path.endswith("/messages/count_tokens"):
            # Reference "Count Message tokens": {"input_tokens": N}.
            kind, text = "application/json", json.dumps({"input_tokens": 42})
        elif self.path.endswith("/chat/completions"):
            kind, text = openai_answer(body)
        elif self.path.endswith("/v1/responses"):
            kind, text = responses_answer(body)
        elif self.path.endswith("/messages"):
            kind, text = anthropic_answer(body)
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = text.encode()
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake = f"http://127.0.0.1:{server.server_address[1]}"
    recorded = start_fake_upstream(FIXTURE, seed=3)
    config = tmp_path_factory.mktemp("inbound") / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt\n"
        "    litellm_params:\n"
        "      model: openai/fake-gpt\n"
        f"      api_base: {fake}/v1\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "      input_cost_per_token: 0.000001\n"
        "      output_cost_per_token: 0.000002\n"
        "  - model_name: gpt-compat\n"
        "    litellm_params:\n"
        "      model: custom_openai/fake-gpt\n"
        f"      api_base: {fake}/v1\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "      input_cost_per_token: 0.000001\n"
        "      output_cost_per_token: 0.000002\n"
        "  - model_name: claude\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5-20250929\n"
        f"      api_base: {fake}\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "  - model_name: claude-recorded\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5-20250929\n"
        f"      api_base: {recorded.url}\n"
        "      api_key: os.environ/UPSTREAM_KEY\n"
        "general_settings:\n"
        "  master_key: os.environ/MASTER_KEY\n"
    )
    proc = start_gateway(config, {"UPSTREAM_KEY": UPSTREAM_KEY, "MASTER_KEY": MASTER_KEY})
    yield proc.url
    code, logs = proc.stop()
    recorded.stop()
    server.shutdown()
    assert code == 0
    assert "messages" in logs and "responses" in logs, logs
    assert MASTER_KEY not in logs and UPSTREAM_KEY not in logs, "a key leaked into the logs"


def claude(url):
    return anthropic.Anthropic(base_url=url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def gpt(url):
    return openai.OpenAI(base_url=url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_anthropic_sdk_messages(gateway, model):
    message = claude(gateway).messages.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        extra_body={"top_k": 3},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    sent = Fake.seen[-1][2]
    if model == "claude":
        # To Anthropic the request goes as written, top_k and all.
        assert sent["top_k"] == 3 and sent["model"] == "claude-sonnet-4-5-20250929"
    else:
        assert "top_k" not in sent and sent["messages"][0]["role"] == "system"
    assert message.type == "message"
    assert message.content[0].type == "text"
    assert message.content[0].text == ("Sunny in Paris." if model == "gpt" else "Bonjour.")
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == (4 if model == "gpt" else 15)


@pytest.mark.parametrize("model", ["gpt", "claude", "claude-recorded"])
def test_anthropic_sdk_stream(gateway, model):
    with claude(gateway).messages.stream(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    want = {"gpt": "Sunny in Paris."}.get(model, "The capital of France is Paris, on the Seine.")
    assert text == want
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == (4 if model == "gpt" else 15)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_use_round_trip(gateway, stream):
    client = claude(gateway)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(model="gpt", max_tokens=100, tools=[WEATHER], messages=ask) as s:
            message = s.get_final_message()
    else:
        message = client.messages.create(model="gpt", max_tokens=100, tools=[WEATHER], messages=ask)
    assert message.stop_reason == "tool_use"
    call = [b for b in message.content if b.type == "tool_use"][0]
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    answer = client.messages.create(
        model="gpt",
        max_tokens=100,
        tools=[WEATHER],
        messages=ask + [
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18C, sunny"}]},
        ],
    )
    assert answer.content[0].text == "Sunny in Paris."
    sent = Fake.seen[-1][2]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C, sunny"}
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_anthropic_sdk_errors_are_anthropic_errors(gateway):
    with pytest.raises(anthropic.NotFoundError) as error:
        claude(gateway).messages.create(
            model="nope", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert error.value.body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=gateway, api_key="sk-wrong-0123456789", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("model", ["gpt", "gpt-compat"])
def test_openai_sdk_responses(gateway, model):
    raw = gpt(gateway).responses.with_raw_response.create(
        model=model, instructions="Be brief.", input="Weather in Paris?")
    response = raw.parse()
    path, _, sent = Fake.seen[-1]
    if model == "gpt":
        # OpenAI's own Responses API gets the request as written.
        assert path == "/v1/responses"
        assert sent == {"model": "fake-gpt", "instructions": "Be brief.",
                        "input": "Weather in Paris?"}
        assert response.id == "resp_fake"
    else:
        assert path == "/v1/chat/completions"
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert response.status == "completed"
    assert response.output_text == "Sunny in Paris."
    assert response.usage.input_tokens == 11
    assert response.usage.output_tokens == 4
    # 11 × 0.000001 + 4 × 0.000002, both groups' prices.
    assert_response_cost(raw, "0.000019", (11, "0.000001"), (4, "0.000002"))


@pytest.mark.parametrize("model", ["gpt", "gpt-compat"])
def test_openai_sdk_responses_stream(gateway, model):
    stream = gpt(gateway).responses.create(model=model, input="Weather in Paris?", stream=True)
    deltas, completed, types = [], None, []
    for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    path = Fake.seen[-1][0]
    assert path == ("/v1/responses" if model == "gpt" else "/v1/chat/completions")
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "error" not in types and "response.failed" not in types
    assert "".join(deltas) == "Sunny in Paris."
    assert completed is not None and completed.output_text == "Sunny in Paris."
    assert completed.usage.output_tokens == 4


def test_openai_sdk_responses_function_call(gateway):
    tool = {"type": "function", "name": "get_weather", "description": "The weather",
            "parameters": WEATHER["input_schema"]}
    client = gpt(gateway)
    response = client.responses.create(model="gpt-compat", input="Weather in Paris?", tools=[tool])
    call = [item for item in response.output if item.type == "function_call"][0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    follow = client.responses.create(
        model="gpt-compat", tools=[tool],
        input=[{"role": "user", "content": "Weather in Paris?"},
               {"type": "function_call", "call_id": call.call_id, "name": call.name,
                "arguments": call.arguments},
               {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    assert follow.output_text == "Sunny in Paris."


def test_openai_sdk_previous_response_id(gateway):
    # OpenAI keeps the conversation: the id goes to it.
    follow = gpt(gateway).responses.create(
        model="gpt", input="And tomorrow?", previous_response_id="resp_fake")
    assert follow.previous_response_id == "resp_fake"
    assert Fake.seen[-1][2]["previous_response_id"] == "resp_fake"
    # A group served through chat keeps none: a clear 400.
    seen = len(Fake.seen)
    with pytest.raises(openai.BadRequestError) as error:
        gpt(gateway).responses.create(model="gpt-compat", input="x", previous_response_id="resp_1")
    assert "previous_response_id" in str(error.value)
    assert len(Fake.seen) == seen


def test_anthropic_sdk_count_tokens(gateway):
    count = claude(gateway).messages.count_tokens(
        model="claude", messages=[{"role": "user", "content": "Hello"}])
    assert count.input_tokens == 42
    path, headers, sent = Fake.seen[-1]
    assert path == "/v1/messages/count_tokens"
    assert sent["model"] == "claude-sonnet-4-5-20250929"
    assert headers.get("x-api-key") == UPSTREAM_KEY
    with pytest.raises(anthropic.BadRequestError) as error:
        claude(gateway).messages.count_tokens(
            model="gpt", messages=[{"role": "user", "content": "Hello"}])
    assert "Anthropic model" in str(error.value)
