"""Render workers, one per device: dispatch round-robin, reassembly, crash recovery."""
