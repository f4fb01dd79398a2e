"""The sim engine's token counts follow its documented rule on every call, also when it counts
a growing conversation from its memo of messages already seen."""

from __future__ import annotations

from conclave.cluster.engines.sim import SimEngine, prompt_tokens
from conclave.schema.chat import ChatMessage, ChatRequest


def _msg(role: str, text: str) -> ChatMessage:
    return ChatMessage.model_validate({"role": role, "content": text})


async def test_prompt_tokens_of_a_growing_conversation_follow_the_rule_on_every_call() -> None:
    engine = SimEngine({"mode": "echo"})
    history = [_msg("system", "you are terse"), _msg("user", "one two three")]
    for turn in range(5):
        req = ChatRequest(messages=list(history))
        r = await engine.chat(req)
        assert r.usage.prompt_tokens == prompt_tokens(req) == sum(4 + len(m.text().split()) for m in history)
        history.append(_msg("assistant", f"reply {turn} " + "word " * turn))


async def test_a_replaced_message_is_counted_afresh() -> None:
    """Compaction replaces messages with new objects: their counts come from the new text."""
    engine = SimEngine({"mode": "echo"})
    first = [_msg("user", "a b c d e f g h")]
    assert (await engine.chat(ChatRequest(messages=first))).usage.prompt_tokens == 12
    del first
    for n in range(1, 40):  # new objects, often at a freed object's address
        req = ChatRequest(messages=[_msg("user", " ".join(["w"] * n))])
        assert (await engine.chat(req)).usage.prompt_tokens == 4 + n
