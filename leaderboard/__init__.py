"""Turning run records into leaderboard tables."""
