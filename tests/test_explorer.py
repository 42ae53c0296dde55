"""The search explorer in a real headless Chromium against a live server on the real
engine: run a search and watch its tree grow, open a saved trace. (Its API-key
prompt is tested on the keyed server in test_production.py.)"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import headless_chromium, poll
from tests.servers import RunningServer

QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with headless_chromium() as driver:
        yield driver


def by_css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def one(driver, selector: str):
    (element,) = by_css(driver, selector)
    return element


def set_value(driver, selector: str, value: object) -> None:
    element = one(driver, selector)
    element.clear()
    element.send_keys(str(value))


def open_explorer(driver, server: RunningServer) -> None:
    driver.get(server.url + "/")
    # The strategies come from /v1/models: the page has talked to the server.
    poll(lambda: "mcts" in strategies(driver), 30)


def strategies(driver) -> list[str]:
    return [option.get_attribute("value") for option in by_css(driver, "#strategy option")]


def usage(driver) -> dict[str, str]:
    return {dd.get_attribute("data-usage"): dd.text for dd in by_css(driver, "#usage-list dd")}


def test_a_search_grows_live_and_ends_on_the_chosen_path(
    browser, ponder_server: RunningServer
) -> None:
    from selenium.webdriver.support.ui import Select

    open_explorer(browser, ponder_server)
    set_value(browser, "#question", QUESTION)
    Select(one(browser, "#strategy")).select_by_value("beam_search")
    set_value(browser, "[data-param=n]", 8)
    set_value(browser, "[data-param=beam_width]", 4)
    set_value(browser, "[data-param=max_step_tokens]", 16)
    set_value(browser, "[data-param=seed]", 5)
    set_value(browser, "#budget-max_tokens", 160)
    one(browser, "#run").click()

    # Nodes appear while the answer is still pending: the tree grows from the stream.
    def growing() -> int:
        nodes = len(by_css(browser, "#tree circle.node"))
        pending = one(browser, "#answer-detail").text == "–"
        return nodes if nodes > 1 and pending else 0

    seen_live = poll(growing, 120)
    poll(lambda: one(browser, "#status").text.startswith("done"), 180)
    assert not one(browser, "#error").is_displayed()

    circles = by_css(browser, "#tree circle.node")
    assert len(circles) >= seen_live > 1
    assert int(one(browser, "#tree").get_attribute("data-waves")) >= 2
    chosen = by_css(browser, "#tree circle.node.chosen")
    assert len(chosen) >= 2, "the chosen path runs from the root to a leaf"
    assert by_css(browser, "#tree line.edge.chosen")
    assert one(browser, ".final-answer").text
    spent = usage(browser)
    assert 0 < int(spent["generated tokens"]) <= 160
    assert int(spent["engine calls"]) >= 2 and spent["stopped"] in ("completed", "token_budget")
    assert 0 <= float(spent["cached prompt share"]) <= 1

    # A node's step text, scores and path are one click away.
    leaf = chosen[-1]
    leaf_id = leaf.get_attribute("data-node-id")
    leaf.click()  # redraws the tree: `leaf` is stale from here on
    detail = one(browser, "#node-detail")
    assert f"#{leaf_id}" in detail.text and "score" in detail.text
    step_text = by_css(browser, "#node-detail pre")[0]  # then the whole path, folded
    assert step_text.text.strip()

    shot = os.environ.get("PONDER_EXPLORER_SCREENSHOT")
    if shot:  # how docs/explorer.png is made
        browser.save_screenshot(shot)


def test_a_saved_trace_opens_as_it_was(
    browser, ponder_server: RunningServer, tmp_path: Path
) -> None:
    body = {
        "question": QUESTION,
        "strategy": "mcts",
        "simulations": 6,
        "expansion_width": 2,
        "max_step_tokens": 16,
        "seed": 2,
        "return_trace": True,
    }
    saved = httpx.post(ponder_server.url + "/v1/solve", json=body, timeout=300).json()
    path = tmp_path / "mcts.json"
    path.write_text(json.dumps(saved))

    open_explorer(browser, ponder_server)
    one(browser, "#trace-file").send_keys(str(path))
    poll(lambda: one(browser, "#status").text.startswith("done"), 10)
    assert len(by_css(browser, "#tree circle.node")) == len(saved["trace"])
    assert len(by_css(browser, "#tree circle.node.chosen")) == sum(
        node["chosen"] for node in saved["trace"]
    )
    assert one(browser, ".final-answer").text == (saved["answer"] or "no answer")
    assert int(usage(browser)["generated tokens"]) == saved["usage"]["generated_tokens"]

    # A few hundred nodes (20 x 20 under the root) draw in full, chosen path too.
    big = [_node(0, None, chosen=True)]
    for i in range(20):
        big.append(_node(1 + i, 0, chosen=i == 3))
        big += [_node(21 + 20 * i + j, 1 + i, chosen=(i, j) == (3, 7)) for j in range(20)]
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"answer": "7", "stopped_reason": "completed", "trace": big}))
    one(browser, "#trace-file").send_keys(str(path))
    poll(lambda: len(by_css(browser, "#tree circle.node")) == len(big) == 421, 10)
    assert len(by_css(browser, "#tree circle.node.chosen")) == 3
    assert len(by_css(browser, "#tree line.edge.chosen")) == 2

    # A bench results file: one row per problem, a picker to choose between them.
    rows = tmp_path / "results.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps({**saved, "problem_id": f"p{i}", "label": "mcts", "correct": i == 0})
            for i in range(2)
        )
    )
    one(browser, "#trace-file").send_keys(str(rows))
    poll(lambda: len(by_css(browser, "#trace-row option")) == 2, 10)
    assert one(browser, "#trace-row").is_displayed()


def _node(node_id: int, parent: int | None, chosen: bool) -> dict:
    return {
        "id": node_id,
        "parent": parent,
        "text": f"step {node_id}\n\n",
        "num_tokens": 4,
        "chosen": chosen,
        "score": (node_id % 10) / 10,
        "visits": None,
        "value": None,
        "weight": None,
    }
