"""LLM stages (llm1, llm2) against an OpenAI-compatible chat-completions API."""
