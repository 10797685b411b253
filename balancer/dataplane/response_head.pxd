# C types for balancer/dataplane/response_head.py in the compiled build (setup.py): the scan is
# a C loop over the bytes of the head (``p`` points into the bytes object, no copy); Python
# objects are made only for the fields pyjk acts on.
cimport cython
from balancer.dataplane cimport head_bytes as hb

cdef int _CR, _LF, _SP, _H, _DIGIT_0, _DIGIT_1, _O, _K
cdef bytes _OK
cdef int _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _HOP, _UPGRADE, _SET_COOKIE

cdef class ResponseFields:
    cdef public bytes buf, reason
    cdef public list fields
    cdef public object more
    cdef public Py_ssize_t start
    cdef public int status
    cdef public bint http1
    cdef public object content_length, te, conn_tokens, upgrade, set_cookies

    cpdef void add(self, bytes data) except *
    @cython.locals(buf=bytes)
    cpdef void read_head(self) except *
    cpdef void clear(self) except *
    @cython.locals(p="const unsigned char *", n=Py_ssize_t, i=Py_ssize_t,
                   keep_from=Py_ssize_t, line=Py_ssize_t, colon=Py_ssize_t, name_len=Py_ssize_t,
                   value=Py_ssize_t, value_end=Py_ssize_t, reason=Py_ssize_t, size=Py_ssize_t, kind=int,
                   kept=list, te=bytes, length="long long")
    cpdef Py_ssize_t scan(self, bytes buf, Py_ssize_t start) except -1
    cdef void _connection(self, bytes value) except *

cdef int _kind(const unsigned char *p, Py_ssize_t at, Py_ssize_t n) noexcept
