"""Running a model in-house: the batched generation engine, the chat REPL and the OpenAI-compatible server."""
