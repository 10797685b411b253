# The C layout of Admission in the compiled build (setup.py; Cython reads it beside the .py):
# the client connection admits and releases itself with C calls (downstream.pxd).
from balancer.dataplane.stats cimport TrafficStats

cdef class Admission:
    cdef public set connections
    cdef public dict per_ip, trusted_cache
    cdef public tuple trusted_networks
    cdef public list tls_listeners
    cdef public TrafficStats stats
    cdef public Py_ssize_t max_connections, max_per_ip, refused
    cdef public Py_ssize_t max_head_size, max_headers, max_pipelined, max_body_size
    cdef public Py_ssize_t replay_buffer_size, write_buffer_high
    cdef public double header_timeout, body_timeout, keepalive_timeout

    cpdef Py_ssize_t open_count(self) except -1
    cpdef bint has_room(self) except -1
    cpdef int admit(self, object conn, str ip, bint secure) except -1
    cpdef void release(self, object conn, str ip) except *
    cpdef bint is_trusted(self, str ip) except -1
