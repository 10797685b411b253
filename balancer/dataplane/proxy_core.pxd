# C types for balancer/dataplane/proxy_core.py in the compiled build (setup.py): ProxyServer's
# base, whose per-request fields the exchange reads at C level (exchange.pxd types its server).
cimport cython
from balancer.dataplane cimport head_bytes as hb
from balancer.dataplane.admission cimport Admission
from balancer.dataplane.stats cimport TrafficStats
from balancer.dataplane.timer_wheel cimport TimerWheel

cdef class ProxyCore:
    cdef public object router, access_log
    cdef public TrafficStats stats
    cdef public dict pools_by_member
    cdef public bytes rid_prefix
    cdef public unsigned long long rid_counter
    # read by ClientConnection when it is made and by its first request's checks
    # (downstream.pxd types its server)
    cdef public object limits, fwd_host
    cdef public Admission admission
    cdef public TimerWheel wheel
    cdef public bint secure, fwd_secure
    cdef public set valid_hosts
    cdef public dict forwarded_cache
    cdef public list parser_slots
    cdef public bytes valid_host, fwd_fields
    cdef public str fwd_peer

    # cdef, not cpdef: ProxyServer is a Python subclass, and a cpdef method looks for an
    # override in its instance dictionary at every call
    @cython.locals(n="unsigned long long")
    cdef bytes next_request_id(self)
