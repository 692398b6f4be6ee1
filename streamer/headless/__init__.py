"""The headless client: a WebRTC viewer without a browser (`streamer client`, the tests and the
benches), its microphone, what it measures and records."""
