# C types for balancer/dataplane/head_bytes.py in the compiled build (setup.py): C functions
# over a C pointer into a head's bytes, which request_head.pxd and response_head.pxd cimport
# (``from balancer.dataplane cimport head_bytes as hb``: see head_bytes.py for why not by name),
# and http_request.pxd for ``join``.
cimport cython

cdef int _CR, _SP, _HTAB, _COLON, _LONG_NUMBER
cdef bint _PURE

cdef extern from "string.h":
    const unsigned char *_memchr "memchr" (const unsigned char *s, int c, size_t n) nogil
    void *_memcpy "memcpy" (char *dest, const char *src, size_t n) nogil

cdef extern from *:
    """
    /* a bytes object of ``size`` bytes, not yet filled (CPython's idiom for building one) */
    #define pyjk_new_bytes(size) PyBytes_FromStringAndSize(NULL, (size))
    """
    bytes _new_bytes "pyjk_new_bytes" (Py_ssize_t size)

@cython.locals(j=Py_ssize_t, at="const unsigned char *")
cdef Py_ssize_t find(bytes buf, const unsigned char *p, unsigned char c, Py_ssize_t i,
                     Py_ssize_t n) except? -2
# noexcept: compiled, ``find`` takes the memchr path, which raises nothing
@cython.locals(colon=Py_ssize_t, value=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t, Py_ssize_t) field_line(bytes buf, const unsigned char *p,
                                                     Py_ssize_t i, Py_ssize_t n) noexcept
@cython.locals(q="const unsigned char *", k=Py_ssize_t)
cdef bint named(const unsigned char *p, Py_ssize_t at, bytes name) noexcept
@cython.locals(value="long long", i=Py_ssize_t)
cdef long long number(const unsigned char *p, Py_ssize_t at, Py_ssize_t end) noexcept
@cython.locals(size=Py_ssize_t, part=bytes, out=bytes, at="char *")
cdef bytes join(list parts)
@cython.locals(digits=int, m="unsigned long long", size=Py_ssize_t, out=bytes, at="char *",
               i=Py_ssize_t, d=int)
cdef bytes hex_id(bytes prefix, unsigned long long n)
