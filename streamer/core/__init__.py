"""The transport-free core: the conversation (speech engine), live PCM streams, typed events, the
media clock, playout, utterances and where their render windows are cut. It imports neither
aiortc nor aiohttp (tests/unit/test_layers.py holds it to that); the WebRTC glue in
`streamer.webrtc` and the server in `streamer.server` drive it."""
