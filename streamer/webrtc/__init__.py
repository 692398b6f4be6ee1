"""The WebRTC glue: everything that knows aiortc. The media pump and its tracks, our video and
Opus encoders, the bitrate ladder and link controller, the UDP port range. Every private part of
aiortc it touches is named in `hooks.py` and tested against the pinned version. The
transport-free core (clock, playout, utterances, segmenter) is in `streamer.core`, the pixels
(compositor, I420) in `streamer.video`; `session.py` is one viewer's peer connection."""
