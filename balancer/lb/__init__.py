"""The lb engine: members, states, methods, sticky resolution and maintenance, free of I/O.

Entry points: ``LbEngine`` (engine.py), the plan it hands out per request (plan.py), the
contract with the data plane (decisions.py) and ``rate`` for the status page (rating.py).
"""
