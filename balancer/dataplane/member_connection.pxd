# The C layout of MemberSocket in the compiled build (setup.py; Cython reads it beside the .py).
# AjpConnection stays a Python subclass; UpstreamConnection (upstream.pxd) is an extension type.
# The exchange is typed: a member connection reports to it with C calls.
from balancer.dataplane.exchange cimport Exchange
from balancer.dataplane.pool cimport MemberPool

cdef class MemberSocket:
    cdef public MemberPool pool
    cdef public object loop, transport, tunnel, timer
    cdef public Exchange exchange
    cdef public object content_length, set_cookies, upgrade
    cdef public list headers
    cdef public bytes reason
    cdef public object fields
    cdef public int status
    cdef public Py_ssize_t received
    cdef public bint chunked, closed, discarded, head_request, read_paused, reused
    cdef public double idle_since, last_read, reply_timeout, socket_timeout, write_paused_at

    cpdef send_request(self, Exchange ex, double reply_timeout, bint head_request)
