"""Publishing what the read API serves."""
