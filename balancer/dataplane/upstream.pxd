# The C layout of UpstreamConnection in the compiled build (Cython reads it beside the .py).
from balancer.dataplane.member_connection cimport MemberSocket

cdef class UpstreamConnection(MemberSocket):
    cdef public object parser, te, conn_tokens
    cdef public str error
    cdef public bint chunked_up, close_delimited, head_stop, in_body, keep_alive, msg_done
    cdef public double request_done_at, timer_at
