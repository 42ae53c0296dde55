"""Search algorithms over a policy's reasoning; pure asyncio, no FastAPI or vLLM."""
