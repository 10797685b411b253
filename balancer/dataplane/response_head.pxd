# C types for balancer/dataplane/response_head.py in the compiled build (setup.py): the scan is
# a C loop over the bytes of the head (``p`` points into the bytes object, no copy); Python
# objects are made only for the fields pyjk acts on.
cimport cython

cdef int _CR, _LF, _COLON, _SP, _HTAB, _H, _DIGIT_0, _DIGIT_1, _O, _K, _LONG_NUMBER
cdef bytes _OK
cdef bint _PURE
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
                   keep_from=Py_ssize_t, line=Py_ssize_t, name_len=Py_ssize_t,
                   value=Py_ssize_t, value_end=Py_ssize_t, reason=Py_ssize_t, size=Py_ssize_t, kind=int,
                   kept=list, te=bytes, length="long long")
    cpdef Py_ssize_t scan(self, bytes buf, Py_ssize_t start) except -1
    cdef void _connection(self, bytes value) except *

cdef extern from "string.h":
    const unsigned char *_memchr "memchr" (const unsigned char *s, int c, size_t n) nogil

@cython.locals(j=Py_ssize_t, at="const unsigned char *")
cdef inline Py_ssize_t _find(bytes buf, const unsigned char *p, unsigned char c, Py_ssize_t i,
                             Py_ssize_t n) except? -2
cdef int _kind(const unsigned char *p, Py_ssize_t at, Py_ssize_t n) noexcept
@cython.locals(q="const unsigned char *", k=Py_ssize_t)
cdef bint _named(const unsigned char *p, Py_ssize_t at, bytes name) noexcept
@cython.locals(value="long long", i=Py_ssize_t)
cdef long long _number(const unsigned char *p, Py_ssize_t at, Py_ssize_t end) noexcept
