"""What both backends share: server locks, the in-session paths, reserved labels, UTF-8 boundaries.

Modules here import neither `backends.local` nor `backends.agentbay` (tests/unit/test_layering.py
enforces it), so each backend can take from here without reaching into the other.
"""
