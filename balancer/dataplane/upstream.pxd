# The C layout of UpstreamConnection in the compiled build (Cython reads it beside the .py).
# The per-response methods are C-callable and know their exchange's type: the calls into it
# (head, body, end) are C calls.
cimport cython
from balancer.dataplane cimport head_bytes as hb
from balancer.dataplane.exchange cimport Exchange
from balancer.dataplane.http_request cimport request_head
from balancer.dataplane.member_connection cimport MemberSocket
from balancer.dataplane.response_head cimport ResponseFields

cdef int _BODY_NONE, _BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE
cdef Py_ssize_t _COPY_MAX, _VIEW_SHARE
cdef long long _LEFT_MAX

@cython.locals(size=Py_ssize_t)
cdef object _piece(bytes data, const unsigned char *p, Py_ssize_t begin, Py_ssize_t end)

cdef class UpstreamConnection(MemberSocket):
    cdef public object parser, lines
    cdef public ResponseFields head
    cdef public str error
    cdef public bint chunked_up, close_delimited, head_stop, in_body, keep_alive, msg_done
    cdef public double request_done_at, timer_at
    cdef public int body_kind
    cdef public long long body_left
    cdef public Py_ssize_t body_at, read_size

    @cython.locals(fields=dict, parts=list, pieces=list)
    cpdef send_request(self, Exchange ex, double reply_timeout, bint head_request)
    @cython.locals(ex=Exchange, n=Py_ssize_t)
    cpdef data_received(self, data)
    @cython.locals(p="const unsigned char *", at=Py_ssize_t, n=Py_ssize_t, kind=int,
                   take="long long", left="long long",
                   spans=list, begin=Py_ssize_t, end=Py_ssize_t)
    cdef bint _relay(self, Exchange ex, bytes data) except -1
    @cython.locals(ex=Exchange, head=ResponseFields, reason=bytes, buf=bytes)
    cpdef on_headers_complete(self)
