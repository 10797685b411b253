# C types for balancer/dataplane/routes.py in the compiled build (setup.py): ProxyTo's fields
# are read-only C fields, which the exchange reads for every request it forwards.
cdef class ProxyTo:
    cdef readonly object engine
    cdef readonly object rule
    cdef readonly object route_override
    cdef readonly str name
