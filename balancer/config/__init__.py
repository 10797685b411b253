"""Configuration: workers.properties → typed, validated model.

    config, warnings = load_workers("conf/workers.properties")   # or ConfigError

Rooms: ``properties`` (lines, variables), ``directives`` (the one directive table), ``values``
(value parsing), ``references`` (templates), ``build`` (typed workers, lb rules), ``reader``
(the whole load), ``model`` (the frozen dataclasses), ``summary``, ``docs`` (the reference page).
"""

from balancer.config.errors import ConfigError, Problem
from balancer.config.reader import load_workers, parse_workers
from balancer.config.summary import summary

__all__ = ["ConfigError", "Problem", "load_workers", "parse_workers", "summary"]
