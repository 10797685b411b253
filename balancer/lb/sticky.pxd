# C types for balancer/lb/sticky.py (Cython's pure-Python mode; see setup.py): the plan calls
# session_span (and, for the uncommon ids, session_text and session_routes) for every request,
# and route_start and same_bytes, as does the engine, as C calls (plan.pxd, engine.pxd cimport
# them); the cookie scan runs over the bytes of each Cookie header through a C pointer, the name
# found with libc's memchr and memcmp. route_start and same_bytes take offsets into the bytes
# unchecked, so they are cdef: C-only, not callable from Python with offsets past the buffer.
cimport cython
from balancer.config.rules cimport RuleExtensions
from balancer.lb.decisions cimport RequestFacts
from balancer.lb.settings cimport LbSettings

cdef int _SEMICOLON, _COMMA, _EQUALS, _QUOTE, _SP, _DOT, _QUESTION, _SLASH
cdef Py_ssize_t _NO_SESSION, _JK_ROUTE, _IN_PATH, _SEVERAL
cdef bint _PURE
cdef tuple _path_key, _cookie_key

cdef extern from "string.h":
    const unsigned char *_memchr "memchr" (const unsigned char *s, int c, size_t n) nogil
    int _memcmp "memcmp" (const unsigned char *a, const unsigned char *b, size_t n) nogil

@cython.locals(rule=RuleExtensions)
cpdef (Py_ssize_t, Py_ssize_t, Py_ssize_t) session_span(RequestFacts facts, LbSettings settings) except *
@cython.locals(key=bytes)
cpdef object session_text(RequestFacts facts, LbSettings settings, Py_ssize_t k, Py_ssize_t at,
                          Py_ssize_t stop)
@cython.locals(k=Py_ssize_t, at=Py_ssize_t, stop=Py_ssize_t)
cpdef object session_id(RequestFacts facts, LbSettings settings)
@cython.locals(at=Py_ssize_t, stop=Py_ssize_t)
cpdef object path_parameter(bytes uri, str name)
@cython.locals(key=bytes, p="const unsigned char *", n=Py_ssize_t, start=Py_ssize_t,
               after=Py_ssize_t, stop=Py_ssize_t)
cpdef (Py_ssize_t, Py_ssize_t) path_span(bytes uri, str name) except *

@cython.locals(key=bytes)
cpdef object cookie_value(object headers, str name)
@cython.locals(count=Py_ssize_t, one=str, found=list, k=Py_ssize_t, header=bytes,
               p="const unsigned char *", n=Py_ssize_t, at=Py_ssize_t, stop=Py_ssize_t,
               value=str, begin=Py_ssize_t, end=Py_ssize_t)
cdef object _joined(object headers, bytes key, Py_ssize_t first)
@cython.locals(key=bytes, found=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, k=Py_ssize_t,
               header=bytes, p="const unsigned char *", n=Py_ssize_t, at=Py_ssize_t,
               stop=Py_ssize_t)
cpdef (Py_ssize_t, Py_ssize_t, Py_ssize_t) cookie_span(object headers, str name) except *
cdef bytes _cookie_bytes(str name)
cdef (Py_ssize_t, Py_ssize_t) _unquoted(const unsigned char *p, Py_ssize_t at,
                                        Py_ssize_t stop) noexcept

cdef tuple _keyed(str name, tuple last)
cdef bytes _encoded(str name)

@cython.locals(size=Py_ssize_t, i=Py_ssize_t, c="unsigned char", at=Py_ssize_t,
               stop=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t) _next_value(bytes header, const unsigned char *p, Py_ssize_t n,
                                          bytes key, Py_ssize_t start) noexcept

@cython.locals(q="const unsigned char *", size=Py_ssize_t, last=Py_ssize_t,
               at="const unsigned char *")
cdef Py_ssize_t _find(bytes header, const unsigned char *p, Py_ssize_t n, bytes key,
                      Py_ssize_t i) noexcept

@cython.locals(p="const unsigned char *", i=Py_ssize_t)
cdef Py_ssize_t route_start(bytes data, Py_ssize_t at, Py_ssize_t stop) except? -2
@cython.locals(p="const unsigned char *", q="const unsigned char *")
cdef bint same_bytes(bytes data, Py_ssize_t at, Py_ssize_t stop, bytes key) except -1

@cython.locals(dot=Py_ssize_t)
cpdef list session_routes(str session)
