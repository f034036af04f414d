"""Routing: the enterprise's rules (rules.py), the pure decisions (decide.py) and the engine that
applies them to WeCom and the stored state (engine.py)."""
