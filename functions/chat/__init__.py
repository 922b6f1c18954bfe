"""The chat function: LLM conversations with a tool-use loop run as a chain of CloudEvents.

Read in this order: `app.py` (spec, routes), `handlers.py` (events and POST /v1/chat),
`loop.py` (the steps), `conversation_store.py` (the state machine in PostgreSQL),
`providers/` (Anthropic and OpenAI-compatible behind one interface), `settings.py`.
"""
