# C types for balancer/dataplane/request_head.py in the compiled build (setup.py): the scan is a
# C loop over the bytes of the head (``p`` points into the bytes object, no copy), and the
# checks read the request's and the connection's C fields.
cimport cython
from balancer.dataplane cimport head_bytes as hb
from balancer.dataplane.downstream cimport ClientConnection
from balancer.dataplane.proxy_core cimport ProxyCore
from balancer.dataplane.request cimport Request

cdef int _C_HOST, _C_CONTENT_LENGTH, _C_TRANSFER_ENCODING, _C_CONNECTION, _C_EXPECT, _C_UPGRADE
cdef int _C_COOKIE, _C_XFF, _C_XFPROTO, _C_XFHOST, _C_FORWARDED, _C_KEEP_ALIVE
cdef int _C_PROXY_CONNECTION, _C_PROXY_AUTHORIZATION, _C_PROXY_AUTHENTICATE, _C_TE, _C_TRAILER
cdef int _C_CLIENT_CERT, _C_CLIENT_CERT_CHAIN, _C_CONTENT_TYPE, _C_CONTENT_LOCATION
cdef int _C_CONTENT_RANGE, _C_MAX_FORWARDS, _C_USER_AGENT, _C_AUTHORIZATION
cdef int _H_HOST, _H_CONTENT_LENGTH, _H_TRANSFER_ENCODING, _H_CONNECTION, _H_EXPECT, _H_UPGRADE
cdef int _H_COOKIE, _H_XFF, _H_XFPROTO, _H_XFHOST, _H_FORWARDED, _H_HOP, _H_SINGLETON
cdef int _CR, _SP, _UNDERSCORE, _G, _P, _O, _H
cdef bytes _GET, _POST, _HEAD, _CLOSE, _KEEP_ALIVE_TOKEN

@cython.locals(p="const unsigned char *", n=Py_ssize_t, i=Py_ssize_t, sp=Py_ssize_t,
               eol=Py_ssize_t, line=Py_ssize_t, colon=Py_ssize_t, name_len=Py_ssize_t, value=Py_ssize_t,
               value_end=Py_ssize_t, code=int, kind=int, bit=long, fields=Py_ssize_t,
               size=Py_ssize_t, max_headers=Py_ssize_t, max_size=Py_ssize_t, version=int,
               length="long long", val=bytes)
cpdef int read_head(ClientConnection conn, Request req, bytes buf, Py_ssize_t start) except -1
@cython.locals(method=bytes, target=bytes, host=object, tokens=list, t="const unsigned char *",
               n=Py_ssize_t, q=Py_ssize_t, server=ProxyCore, known=set)
cpdef int check_head(ClientConnection conn, Request req, int version) except -1
cdef int _code(const unsigned char *p, Py_ssize_t at, Py_ssize_t n) noexcept
