"""Listening to a viewer's microphone, with no transport: voice activity, turns, speech
recognition and barge-in. The session feeds 16 kHz mono audio in; turns come out as
transcripts (events, and text turns for the reply engine)."""
