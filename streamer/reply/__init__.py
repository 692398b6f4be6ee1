"""The reply engine (conversation mode): a question in, the answer spoken sentence by sentence.

Transport-free: it talks to the LLM and TTS servers over HTTP (an injected aiohttp client
session) and feeds a `Conversation`'s live stream; it imports neither aiortc nor aiohttp.web.
"""
