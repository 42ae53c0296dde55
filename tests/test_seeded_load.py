"""Seeded requests under load must never take the CPU engine down.

vLLM's CPU build died ("CPU Generator does not use offset") when seeded requests
had their prompts prefilled in chunks; see `VLLMPolicy.start`. Sixteen concurrent
seeded best-of-16 requests with ~1,000-token prompts exceed one batch's token
budget many times over, which is exactly when prompts would be chunked.
"""

from __future__ import annotations

import asyncio

import httpx


def long_question(index: int) -> str:
    facts = " ".join(
        f"Shelf {k} of store {index} holds {3 * k + index} red boxes and {k + 2} blue boxes."
        for k in range(1, 45)
    )
    return f"{facts} How many red boxes are on shelf 7 of store {index}?"


async def _hammer(url: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as http:
        return list(
            await asyncio.gather(
                *(
                    http.post(
                        "/v1/solve",
                        json={
                            "question": long_question(i),
                            "n": 16,
                            "max_new_tokens": 8,
                            "seed": i,
                        },
                    )
                    for i in range(16)
                )
            )
        )


def test_sixteen_concurrent_seeded_best_of_16_keep_engine_healthy(ponder_server, client) -> None:
    responses = asyncio.run(_hammer(ponder_server.url))
    assert [r.status_code for r in responses] == [200] * 16, responses[0].text
    bodies = [r.json() for r in responses]
    assert all(len(b["candidates"]) == 16 for b in bodies)
    assert min(b["usage"]["prompt_tokens"] for b in bodies) > 900
    assert client.get("/health").json()["status"] == "ok"
    after = client.post(
        "/v1/solve", json={"question": "What is 2 + 2?", "n": 2, "max_new_tokens": 8, "seed": 1}
    )
    assert after.status_code == 200
