# C types for balancer/dataplane/request_head.py in the compiled build (setup.py): the checks
# read the request's and the connection's C fields.
from balancer.dataplane.downstream cimport ClientConnection
from balancer.dataplane.request cimport Request

cpdef int check_head(ClientConnection conn, Request req) except -1
