# The C layout of MemberPool in the compiled build (setup.py; Cython reads it beside the .py):
# the exchange takes an idle connection and gives it back with C calls.
cimport cython
from balancer.dataplane.member_connection cimport MemberSocket

cdef class MemberPool:
    cdef public object loop, name, host, port, source, limits, ajp, waiters, sweeper
    cdef public object connect_timeout, socket_buffer, socket_keepalive
    cdef public Py_ssize_t size, minsize, total, max_response_head
    cdef public double idle_timeout, acquire_timeout, socket_timeout
    cdef public list idle
    cdef public Py_ssize_t n_idle
    cdef public bint closed

    @cython.locals(n=Py_ssize_t, idle=list, conn=MemberSocket)
    cpdef MemberSocket take_idle(self)
    @cython.locals(n=Py_ssize_t)
    cpdef void release(self, MemberSocket conn, double now=*) except *
    cpdef void discard(self, MemberSocket conn) except *
    cpdef void lost(self, MemberSocket conn) except *
    cdef void _forget(self, MemberSocket conn) except *
