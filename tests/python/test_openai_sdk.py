"""The official OpenAI Python SDK against a running Tollgate gateway."""

import openai
import pytest

EXPECTED = "Hello from the Tollgate mock, streamed word by word."


def client(gateway, key=None):
    return openai.OpenAI(
        base_url=gateway["url"] + "/v1",
        api_key=key or gateway["key"],
        max_retries=0,
        timeout=30,
    )


def test_non_streaming_completion(gateway):
    completion = client(gateway).chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == EXPECTED
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0


def test_streaming_completion(gateway):
    stream = client(gateway).chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    chunks = 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
    assert text == EXPECTED
    assert chunks > 3, "the answer arrives in several chunks"
    assert usage is not None and usage.total_tokens > 0


def test_raw_response_headers(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"x-request-id": "python-sdk-test-1"},
    )
    assert raw.headers["x-request-id"] == "python-sdk-test-1"
    assert raw.headers["x-tollgate-model-group"] == "mock-gpt"
    assert raw.parse().choices[0].message.content == EXPECTED


def test_models_list(gateway):
    models = client(gateway).models.list()
    assert [m.id for m in models.data] == ["mock-gpt"]


def test_unknown_model_raises_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway).chat.completions.create(
            model="no-such-model",
            messages=[{"role": "user", "content": "hi"}],
        )
    assert caught.value.code == "model_not_found"


def test_bad_key_raises_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError):
        client(gateway, key="sk-wrong-key").chat.completions.create(
            model="mock-gpt",
            messages=[{"role": "user", "content": "hi"}],
        )


def test_bad_request_raises_bad_request_error(gateway):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).chat.completions.create(model="mock-gpt", messages=[])
    assert caught.value.param == "messages"
