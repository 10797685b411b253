# C types for balancer/dataplane/http_request.py in the compiled build (setup.py): the head is
# built from the exchange's, the request's and the connection's C fields.
cimport cython
from balancer.dataplane.downstream cimport ClientConnection
from balancer.dataplane.exchange cimport Exchange
from balancer.dataplane.proxy_core cimport ProxyCore
from balancer.dataplane.request cimport Request

@cython.locals(req=Request, client=ClientConnection, parts=list, server=ProxyCore, peer=str,
               secure=bint, cache=dict, fields=bytes)
cpdef list request_head(Exchange ex)
