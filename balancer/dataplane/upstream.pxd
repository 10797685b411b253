# The C layout of UpstreamConnection in the compiled build (Cython reads it beside the .py).
# The per-response methods are C-callable and know their exchange's type: the calls into it
# (head, body, end) are C calls.
cimport cython
from balancer.dataplane.exchange cimport Exchange
from balancer.dataplane.http_request cimport request_head
from balancer.dataplane.member_connection cimport MemberSocket
from balancer.dataplane.response_head cimport ResponseFields

cdef class UpstreamConnection(MemberSocket):
    cdef public object parser
    cdef public ResponseFields head
    cdef public str error
    cdef public bint chunked_up, close_delimited, head_stop, in_body, keep_alive, msg_done
    cdef public double request_done_at, timer_at

    @cython.locals(fields=dict)
    cpdef send_request(self, Exchange ex, double reply_timeout, bint head_request)
    @cython.locals(ex=Exchange)
    cpdef data_received(self, data)
    @cython.locals(ex=Exchange, head=ResponseFields, reason=bytes)
    cpdef on_headers_complete(self)
    @cython.locals(ex=Exchange)
    cpdef on_body(self, body)
