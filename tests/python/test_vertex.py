"""Vertex AI through the gateway, read by the OpenAI Python SDK: `vertex_ai/`
deployments (a Claude and a Gemini model) against a fake Vertex AI written
here from Google's public references — the token exchange of "Using OAuth 2.0
for Server to Server Applications"
(https://developers.google.com/identity/protocols/oauth2/service-account), the
`generateContent` / `streamGenerateContent?alt=sse` routes of the Vertex AI API
reference, and Anthropic's "Claude on Vertex AI" `rawPredict` route
(https://docs.anthropic.com/en/api/claude-on-vertex-ai).

The fake checks the assertion's shape and claims (the Rust fake,
`tollgate_testkit::vertex`, also verifies its RS256 signature) and a bearer
token it issued on every model request."""

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import openai
import pytest

from conftest import ROOT, start_gateway

KEY_PEM = (ROOT / "crates/tollgate-testkit/fixtures/vertex-test-key.pem").read_text()
EMAIL = "tollgate-python@tollgate-test.iam.gserviceaccount.com"
PROJECT = "tollgate-test"
ROUTE = re.compile(
    rf"^/v1/projects/{PROJECT}/locations/us-east5/publishers/(google|anthropic)/models/([^/:]+):(\w+)$"
)


def _b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class FakeVertex:
    """The token endpoint and the model routes; model answers are scripted."""

    def __init__(self):
        self.token_requests = 0
        self.issued = set()
        self.replies = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/token":
                    self._answer(*fake.token(self.headers, body))
                else:
                    self._answer(*fake.model(self.path, self.headers, body))

            def _answer(self, status, content_type, payload):
                data = payload.encode()
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def key_file(self) -> str:
        return json.dumps({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "python-test-key",
            "private_key": KEY_PEM,
            "client_email": EMAIL,
            "token_uri": self.url + "/token",
        })

    def push(self, status, payload, content_type="application/json"):
        with self.lock:
            self.replies.append((status, content_type, payload))

    def token(self, headers, body):
        with self.lock:
            self.token_requests += 1
            form = parse_qs(body.decode())
            bad = lambda why: (400, "application/json", json.dumps(
                {"error": "invalid_grant", "error_description": why}))
            if headers.get("content-type") != "application/x-www-form-urlencoded":
                return bad("form expected")
            if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                return bad("Invalid grant_type")
            parts = form.get("assertion", [""])[0].split(".")
            if len(parts) != 3:
                return bad("Invalid JWT")
            header, claims = _b64json(parts[0]), _b64json(parts[1])
            signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
            if header.get("alg") != "RS256" or len(signature) != 256:
                return bad("Invalid JWT Signature.")
            if claims.get("iss") != EMAIL or claims.get("aud") != self.url + "/token":
                return bad("Invalid JWT: iss or aud")
            if "https://www.googleapis.com/auth/cloud-platform" not in claims.get("scope", "").split():
                return bad("Invalid JWT: scope")
            if not 0 < claims["exp"] - claims["iat"] <= 3600:
                return bad("Invalid JWT: lifetime")
            token = f"ya29.python-fake-{self.token_requests}"
            self.issued.add(token)
            return 200, "application/json", json.dumps(
                {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def model(self, path, headers, body):
        with self.lock:
            route = ROUTE.match(path.split("?")[0])
            bearer = headers.get("authorization", "").removeprefix("Bearer ")
            if bearer not in self.issued:
                return 401, "application/json", json.dumps({"error": {
                    "code": 401, "status": "UNAUTHENTICATED",
                    "message": "Request had invalid authentication credentials."}})
            sent = json.loads(body)
            ok = route is not None and (
                route.group(1) == "google"
                and (route.group(3) == "generateContent"
                     or (route.group(3) == "streamGenerateContent" and path.endswith("?alt=sse")))
                or route.group(1) == "anthropic"
                and route.group(3) in ("rawPredict", "streamRawPredict")
                and sent.get("anthropic_version") == "vertex-2023-10-16"
                and "model" not in sent
            )
            if not ok:
                return 404, "application/json", json.dumps({"error": {
                    "code": 404, "status": "NOT_FOUND", "message": f"{path} not found"}})
            return self.replies.pop(0)

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def vertex(tmp_path_factory):
    fake = FakeVertex()
    directory = tmp_path_factory.mktemp("vertex")
    key_file = directory / "service-account.json"
    key_file.write_text(fake.key_file())
    config = directory / "config.yaml"
    deployment = (
        "  - model_name: {group}\n"
        "    litellm_params:\n"
        "      model: vertex_ai/{model}\n"
        f"      api_base: {fake.url}\n"
        "      vertex_location: us-east5\n"
    )
    config.write_text(
        "model_list:\n"
        + deployment.format(group="claude", model="claude-3-5-sonnet@20240620")
        + deployment.format(group="flash", model="gemini-2.0-flash")
        + "router_settings:\n  num_retries: 0\n"
    )
    gateway = start_gateway(config, {
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
        "VERTEXAI_PROJECT": PROJECT,
    })
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    yield fake, client
    code, logs = gateway.stop()
    fake.stop()
    assert code == 0
    for token in fake.issued:
        assert token not in logs, "a Vertex access token leaked into the logs"
    assert KEY_PEM.splitlines()[1] not in logs, "the service account key leaked"
    assert "eyJhbGci" not in logs, "a signed assertion leaked into the logs"


def test_a_claude_completion_with_its_usage(vertex):
    fake, client = vertex
    fake.push(200, json.dumps({
        "id": "msg_vertex_1", "type": "message", "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [{"type": "text", "text": "Paris."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }))
    answer = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Capital of France?"}])
    assert answer.choices[0].message.content == "Paris."
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (12, 3)


def test_a_gemini_stream_as_openai_chunks(vertex):
    fake, client = vertex
    parts = ["The capital ", "of France ", "is Paris."]
    events = ""
    for i, part in enumerate(parts):
        event = {"candidates": [{"content": {"role": "model", "parts": [{"text": part}]}}]}
        if i == len(parts) - 1:
            event["candidates"][0]["finishReason"] = "STOP"
            event["usageMetadata"] = {
                "promptTokenCount": 7, "candidatesTokenCount": 9, "totalTokenCount": 16}
        events += f"data: {json.dumps(event)}\r\n\r\n"
    fake.push(200, events, "text/event-stream")
    stream = client.chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "Capital of France?"}],
        stream=True, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "".join(parts)
    assert finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 9)


def test_a_claude_tool_call(vertex):
    fake, client = vertex
    fake.push(200, json.dumps({
        "id": "msg_vertex_2", "type": "message", "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [{"type": "tool_use", "id": "toolu_vertex", "name": "get_weather",
                     "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 40, "output_tokens": 12},
    }))
    answer = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name) == ("toolu_vertex", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_a_vertex_quota_error_is_a_rate_limit_and_one_token_served_all(vertex):
    fake, client = vertex
    fake.push(429, json.dumps({"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED",
        "message": "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model"}}))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "Hi"}])
    assert fake.token_requests == 1
