"""Bench: NPC traffic mixes turned into load against the running stack, and load into self-describing result folders."""
