"""The read API: answers from precomputed tables only, never from raw events."""
