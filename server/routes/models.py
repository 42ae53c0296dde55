"""`GET /v1/models`: the model ids this server answers, from the chat adapter."""

from __future__ import annotations

from fastapi import APIRouter, Request

from server.routes.deps import chat_adapter
from server.schemas import ModelCard, ModelList

router = APIRouter()


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> ModelList:
    """Plain sampling and one id per strategy it can run (`<model>@<strategy>`)."""
    return ModelList(data=[ModelCard(id=name) for name in chat_adapter(request).model_ids()])
