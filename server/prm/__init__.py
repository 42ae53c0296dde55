"""Process reward model backends: an in-process vLLM engine, or a remote `vllm serve`."""
