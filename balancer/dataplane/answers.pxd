# The C layout of RouteAnswers in the compiled build (setup.py; Cython reads it beside the .py):
# the exchange asks it for every request's route with a C call (exchange.pxd).
from balancer.dataplane.request cimport Request

cdef class RouteAnswers:
    cdef public object router
    cdef public dict answers
    cdef public Py_ssize_t hits, limit, path_limit
    cdef public bint plain_to_router

    cpdef object answer(self, Request req)
    cpdef void remember(self, bytes path, object answer) except *
    cpdef void clear(self) except *
