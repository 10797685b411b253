"""The status worker (mod_jk's jkstatus/jkmanager): views, runtime changes, metrics.

Public API: ``StatusWorker`` (``balancer.status.worker``), ``StatusRequest`` and
``StatusResponse`` (``balancer.status.messages``), ``ServerInfo`` (``balancer.status.model``)
and the data-plane glue in ``balancer.status.adapter``.
"""

from balancer.status.messages import StatusRequest, StatusResponse
from balancer.status.model import ServerInfo
from balancer.status.worker import StatusWorker

__all__ = ["ServerInfo", "StatusRequest", "StatusResponse", "StatusWorker"]
