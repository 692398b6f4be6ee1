"""The WebRTC glue: everything that knows aiortc. The media pump and its tracks, our video and
Opus encoders, the bitrate ladder and link controller, the UDP port range. Every private part of
aiortc it touches is named in `hooks.py` and tested against the pinned version; the
transport-free core (clock, playout, utterances, segmenter, compositor) is in `streamer.media`."""
