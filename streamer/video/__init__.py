"""Pixels of the video track: rendered crops pasted into template frames (I420), and the
offline render of a whole mp4 that uses them. No transport."""
