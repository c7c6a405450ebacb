"""LLM-driven agents over any OpenAI-compatible chat-completions endpoint."""

from sandbank.agents.llm.agent import LLMAgent
from sandbank.agents.llm.client import Cassette, CassetteMiss, ChatClient

__all__ = ["LLMAgent", "ChatClient", "Cassette", "CassetteMiss"]
