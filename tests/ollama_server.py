"""A small server speaking Ollama's HTTP API (/api/chat, /api/tags, /api/version) over llama-cpp-python.

No real Ollama can be installed here, so the ChatOllama backend is tested against this server
backed by the same real GGUF model. Run: python tests/ollama_server.py MODEL.gguf PORT
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from llama_cpp import Llama


def create_app(model_path: str, name: str = "qwen-embedded") -> FastAPI:
    llm = Llama(model_path=model_path, n_ctx=8192, verbose=False)
    app = FastAPI()

    @app.get("/api/version")
    def version() -> dict[str, str]:
        return {"version": "0.6.0-tinyarch-test"}

    @app.get("/api/tags")
    def tags() -> dict[str, Any]:
        return {"models": [{"name": name, "model": name, "modified_at": datetime.now(UTC).isoformat(), "size": 0}]}

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if body.get("model") != name:
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        options = body.get("options") or {}
        fmt = body.get("format")
        response_format = None
        if isinstance(fmt, dict):
            response_format = {"type": "json_object", "schema": fmt}
        elif fmt == "json":
            response_format = {"type": "json_object"}
        started = time.perf_counter_ns()
        out = llm.create_chat_completion(
            messages=body["messages"],
            response_format=response_format,
            temperature=options.get("temperature", 0.8),
            seed=options.get("seed"),
            max_tokens=options.get("num_predict") or 1024,
        )
        text = out["choices"][0]["message"]["content"] or ""
        usage = out.get("usage", {})
        stamp = datetime.now(UTC).isoformat()
        final = {
            "model": name,
            "created_at": stamp,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "total_duration": time.perf_counter_ns() - started,
            "prompt_eval_count": usage.get("prompt_tokens", 0),
            "eval_count": usage.get("completion_tokens", 0),
        }
        if body.get("stream", True):
            chunk = {
                "model": name,
                "created_at": stamp,
                "message": {"role": "assistant", "content": text},
                "done": False,
            }
            lines = (json.dumps(x) + "\n" for x in (chunk, final))
            return StreamingResponse(lines, media_type="application/x-ndjson")
        return {**final, "message": {"role": "assistant", "content": text}}

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
