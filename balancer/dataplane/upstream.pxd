# The C layout of UpstreamConnection in the compiled build (Cython reads it beside the .py).
# The per-response methods are C-callable and know their exchange's type: the calls into it
# (head, body, end) are C calls.
cimport cython
from balancer.dataplane cimport head_bytes as hb
from balancer.dataplane.exchange cimport Exchange
from balancer.dataplane.http_request cimport request_head
from balancer.dataplane.member_connection cimport MemberSocket
from balancer.dataplane.response_head cimport ResponseFields
from balancer.dataplane cimport read_buffers as rb

cdef int _BODY_NONE, _BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE
cdef Py_ssize_t _COPY_MAX, _VIEW_SHARE
cdef long long _LEFT_MAX
cdef Py_ssize_t _LARGE, _SMALL_RUN, _VIEW_MIN
cdef int _DIGIT_1, _H, _T, _P, _SLASH
cdef bint _PURE

cdef extern from "string.h":
    const unsigned char *_memchr "memchr" (const unsigned char *s, int c, size_t n) nogil

@cython.locals(size=Py_ssize_t, whole=Py_ssize_t)
cdef object _piece(object data, const unsigned char *p, Py_ssize_t begin, Py_ssize_t end)
cdef bint _buffers_reads(object loop) except -1
cdef inline bytes _bytes_of(const unsigned char *p, Py_ssize_t begin, Py_ssize_t end)
@cython.locals(at=Py_ssize_t, found="const unsigned char *")
cdef Py_ssize_t _head_end(bytearray buf, const unsigned char *p, Py_ssize_t n) except -1

cdef class UpstreamConnection(MemberSocket):
    cdef public object parser, lines
    cdef public ResponseFields head
    cdef public str error
    cdef public bint chunked_up, close_delimited, head_stop, in_body, keep_alive, msg_done
    cdef public double request_done_at, timer_at
    cdef public int body_kind
    cdef public long long body_left
    cdef public Py_ssize_t body_at, read_size, head_tail
    cdef public bytearray rbuf, lent
    cdef public object face
    cdef public int small_run

    @cython.locals(fields=dict, parts=list, pieces=list)
    cpdef send_request(self, Exchange ex, double reply_timeout, bint head_request)
    cpdef bytearray read_buffer(self)
    @cython.locals(buf=bytearray, p="const unsigned char *", n=Py_ssize_t, end=Py_ssize_t)
    cpdef buffer_read(self, Py_ssize_t nbytes)
    cdef void _choose_reads(self) except *
    cdef void _read_buffered(self, bint on) except *
    cpdef data_received(self, data)
    @cython.locals(ex=Exchange, n=Py_ssize_t)
    cdef void _read(self, object data, const unsigned char *p, bytes head_data) except *
    @cython.locals(at=Py_ssize_t, n=Py_ssize_t, kind=int,
                   take="long long", left="long long",
                   spans=list, begin=Py_ssize_t, end=Py_ssize_t)
    cdef bint _relay(self, Exchange ex, object data, const unsigned char *p) except -1
    @cython.locals(ex=Exchange, head=ResponseFields, reason=bytes, buf=bytes, held=Py_ssize_t)
    cpdef on_headers_complete(self)

cdef class BufferedReads:
    cdef UpstreamConnection conn
    cpdef bytearray get_buffer(self, Py_ssize_t sizehint)
    cpdef buffer_updated(self, Py_ssize_t nbytes)
