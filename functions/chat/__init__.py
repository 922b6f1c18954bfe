"""The chat function: LLM conversations with a tool-use loop run as a chain of CloudEvents.

Read in this order: `function.py` (the declaration: events, routes, lifecycle), `handlers.py`
(events, POST /v1/chat and GET /v1/conversations/{id}), `service.py` (the loop's steps and the
state), `conversation_store.py` (the state machine in PostgreSQL),
`providers/` (Anthropic and OpenAI-compatible behind one interface), `settings.py`.
"""
