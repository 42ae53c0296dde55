"""Production safety over HTTP: API keys, limits, the search queue (429), /metrics,
request ids and JSON access logs, against one extra real server (module-scoped);
plus a backend that is down (503) on a server whose remote policy is unreachable.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import (
    ENGINE_FLAGS,
    RunningServer,
    free_port,
    ponder_command,
    start_server,
    wait_for,
)

MODEL = "smollm2-135m-instruct"
KEY_A, KEY_B = "key-a-" + "x" * 20, "key-b-from-file"
MAX_BODY_BYTES = 4096
SLOW = dict(max_tokens=256, extra_body={"search": {"n": 8, "budget": {"time_limit_s": 6}}})


@pytest.fixture(scope="module")
def keyed_server(embedded_model: Path, tmp_path_factory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("keyed")
    key_file = folder / "keys.txt"
    key_file.write_text(f"# one key per line\n{KEY_B}\n")
    server = start_server(
        ponder_command(
            "--policy",
            str(embedded_model),
            "--served-model-name",
            MODEL,
            "--block-size",
            "32",
            "--api-key",
            KEY_A,
            "--api-key-file",
            str(key_file),
            "--metrics-require-key",
            "--max-concurrent-searches",
            "1",
            "--max-queued-searches",
            "1",
            "--max-body-bytes",
            str(MAX_BODY_BYTES),
            "--max-messages",
            "4",
            "--max-choices",
            "2",
            *ENGINE_FLAGS,
        ),
        folder / "server.log",
        "/health",
    )
    yield server
    assert not server.stop(), "engine processes outlived the server"


def sdk_for(server: RunningServer, key: str, timeout: float = 120) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=timeout)


def ask(client: openai.OpenAI, **kwargs):
    kwargs.setdefault("messages", [{"role": "user", "content": "What is 3 * 4?"}])
    kwargs.setdefault("max_tokens", 16)
    return client.chat.completions.create(model=MODEL, **kwargs)


def test_api_keys_guard_every_route_but_health(keyed_server: RunningServer) -> None:
    for key in (KEY_A, KEY_B):  # a flag key and a file key both work
        assert [m.id for m in sdk_for(keyed_server, key).models.list()][0] == MODEL
    for key in ("wrong", KEY_A[:-1], KEY_A + "x"):
        with pytest.raises(openai.AuthenticationError) as raised:
            ask(sdk_for(keyed_server, key))
        assert raised.value.body["code"] == "invalid_api_key"
    bare = httpx.post(keyed_server.url + "/v1/solve", json={"question": "1+1?"})
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in bare.json()["error"]["message"]
    assert httpx.get(keyed_server.url + "/health").status_code == 200
    assert httpx.get(keyed_server.url + "/metrics").status_code == 401  # --metrics-require-key


def test_request_limits_are_400s_naming_the_limit(keyed_server: RunningServer) -> None:
    client = sdk_for(keyed_server, KEY_A)
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client, messages=[{"role": "user", "content": "x" * MAX_BODY_BYTES}])
    assert f"max_body_bytes={MAX_BODY_BYTES}" in raised.value.body["message"]
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client, messages=[{"role": "user", "content": "hi"}] * 5)
    assert "max_messages=4" in raised.value.body["message"]
    assert raised.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as raised:
        ask(client, n=3)
    assert "max_choices=2" in raised.value.body["message"]


def test_full_queue_is_a_429_with_retry_after(keyed_server: RunningServer) -> None:
    """One search runs, one waits; the third is refused at once, and nobody is lost."""
    outcomes: dict[str, object] = {}

    def slow(name: str) -> None:
        try:
            reply = ask(sdk_for(keyed_server, KEY_A), **SLOW)
            outcomes[name] = reply.usage.model_extra["search"]["stopped_reason"]
        except Exception as error:  # recorded and asserted below
            outcomes[name] = error

    running = threading.Thread(target=slow, args=("running",))
    running.start()
    with httpx.Client(base_url=keyed_server.url, timeout=30) as watcher:
        assert wait_for(lambda: watcher.get("/health").json()["running_requests"] > 0, 10)
        queued = threading.Thread(target=slow, args=("queued",))
        queued.start()
        auth = {"Authorization": f"Bearer {KEY_A}"}
        assert wait_for(
            lambda: "ponder_queue_depth 1.0" in watcher.get("/metrics", headers=auth).text, 10
        )
        with pytest.raises(openai.RateLimitError) as raised:
            ask(sdk_for(keyed_server, KEY_A))
        # Refused at once, not after waiting for a slot: the queued search (which
        # waits for the running one's 6 s, then runs its own) has not finished yet.
        # An event, not a clock: a slow machine stretches both alike.
        assert queued.is_alive(), "the refusal waited for a slot"
        assert int(raised.value.response.headers["retry-after"]) >= 1
        assert raised.value.body["code"] == "server_busy"
        assert "max_concurrent_searches=1" in raised.value.body["message"]
        running.join(60)
        queued.join(60)
        assert outcomes == {"running": ["deadline"], "queued": ["deadline"]}, outcomes
        scrape = watcher.get("/metrics", headers=auth).text
    assert 'status="429"' in scrape
    assert 'ponder_budget_exhaustions_total{reason="deadline",strategy="best_of_n"}' in scrape
    searches = 'ponder_searches_total{stopped_reason="deadline",strategy="best_of_n"}'
    assert _sample(scrape, searches) == 2
    assert _sample(scrape, "ponder_queue_depth") == 0
    assert _sample(scrape, "ponder_active_searches") == 0


def test_request_id_is_echoed_and_logged_as_one_json_line(
    keyed_server: RunningServer,
) -> None:
    response = httpx.post(
        keyed_server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY_B}", "X-Request-ID": "trace-42"},
        json={
            "model": MODEL,
            "max_tokens": 8,
            "seed": 1,
            "messages": [{"role": "user", "content": "What is 3 * 4?"}],
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "trace-42"
    generated = httpx.get(keyed_server.url + "/health").headers["x-request-id"]
    assert len(generated) == 32  # a fresh id when the client sends none
    assert wait_for(lambda: _log_line(keyed_server, "trace-42") is not None, 5)
    line = _log_line(keyed_server, "trace-42")
    assert line["path"] == "/v1/chat/completions" and line["status"] == 200
    assert line["strategy"] == "best_of_n" and line["stopped_reason"] == ["completed"]
    assert line["spent"]["generated_tokens"] == response.json()["usage"]["completion_tokens"]
    assert line["budget"]["max_tokens"] > 0 and line["latency_s"] > 0
    scrape = httpx.get(
        keyed_server.url + "/metrics", headers={"Authorization": f"Bearer {KEY_B}"}
    ).text
    series = 'ponder_tokens_total{kind="generated",strategy="best_of_n"}'
    assert _sample(scrape, series) >= line["spent"]["generated_tokens"] > 0


def test_unreachable_backend_is_a_503_for_the_sdk_and_in_the_stream(tmp_path: Path) -> None:
    """A real `ponder serve` whose remote policy is down (no engine needed)."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    server = start_server(
        ponder_command("--policy-url", dead, "--served-model-name", "ghost"),
        tmp_path / "server.log",
        "/v1/models",
        timeout_s=60,
    )
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "What is 1 + 1?"}]
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="ghost", messages=messages)
        assert raised.value.status_code == 503
        assert raised.value.body["code"] == "policy_unavailable"
        assert "remote policy" in raised.value.body["message"]
        stream = client.chat.completions.create(model="ghost", messages=messages, stream=True)
        with pytest.raises(openai.APIError, match="remote policy"):
            list(stream)
    finally:
        assert not server.stop()


def _log_line(server: RunningServer, request_id: str) -> dict | None:
    for raw in server.log_path.read_text(errors="replace").splitlines():
        if raw.startswith("{") and f'"request_id":"{request_id}"' in raw:
            return json.loads(raw)
    return None


def _sample(scrape: str, name: str) -> float:
    for line in scrape.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_the_explorer_page_is_open_and_asks_for_the_key(keyed_server: RunningServer) -> None:
    """The page holds no data, so it loads without a key; everything it asks the API
    is refused until the user gives it one, and a wrong key shows the server's error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    from tests.browser import headless_chromium, poll

    assert httpx.get(keyed_server.url + "/").status_code == 200
    assert httpx.get(keyed_server.url + "/explorer/explorer.js").status_code == 200
    with headless_chromium() as driver:

        def element(css: str):
            return driver.find_element(By.CSS_SELECTOR, css)

        def error_text() -> str:
            box = element("#error")
            return box.text if box.is_displayed() else ""

        def enter_key(key: str) -> None:
            field = element("#api-key")
            field.clear()
            field.send_keys(key, Keys.TAB)  # leaving the field fires `change`

        driver.get(keyed_server.url + "/")
        assert "missing API key" in poll(error_text, 30)
        assert "needed" in element("#key-label").get_attribute("class")
        enter_key("wrong")
        poll(lambda: "invalid API key" in error_text(), 30)

        enter_key(KEY_A)
        poll(lambda: not error_text() and "mcts" in driver.page_source, 30)
        Select(element("#strategy")).select_by_value("best_of_n")
        for name, value in (("n", 2), ("max_new_tokens", 16)):
            field = element(f"[data-param={name}]")
            field.clear()
            field.send_keys(str(value))
        element("#run").click()
        poll(lambda: element("#status").text.startswith("done"), 120)
        assert element(".final-answer").text

        enter_key("wrong")
        element("#run").click()
        poll(lambda: element("#status").text == "refused", 30)
        assert "401: invalid API key" in error_text()
