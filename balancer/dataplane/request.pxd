# The C layout of Request in the compiled build (setup.py; Cython reads it beside the .py):
# the client connection fills it and the exchange reads it, both at C level.
cdef class Request:
    cdef public str client_ip
    cdef public bint secure, http11, chunked, expect_continue, upgrade_ws, keep_alive
    cdef public bint head_done, complete
    cdef public bytes method, target, path, query
    cdef public list headers, cookies, connection, pending
    cdef public object host, xff, xfproto, xfhost, forwarded, content_length, te, expect
    cdef public object upgrade, sink
    cdef public long singletons
    cdef public Py_ssize_t body_received, pending_size

    cdef void setup(self, str client_ip, bint secure) except *
