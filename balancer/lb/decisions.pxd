# C types for balancer/lb/decisions.py (Cython's pure-Python mode; see setup.py). RequestFacts
# and Forward are made once per request (the exchange, the plan) and read field by field (the
# plan, the session lookup, the exchange, the member connection): extension types with C
# fields, made by C functions the plan and the exchange cimport.
cimport cython
from balancer.config.rules cimport RuleExtensions

cdef class RequestFacts:
    cdef public str method
    cdef public bytes uri
    cdef public object cookies
    cdef public RuleExtensions rule
    cdef public object route_override
    cdef public bint secure

cdef class Forward:
    cdef public object member
    cdef public bint sticky
    cdef public object set_cookie
    cdef public long long reply_timeout_ms
    cdef public bint probe
    cdef public str activation

@cython.locals(facts=RequestFacts)
cpdef RequestFacts new_facts(str method, bytes uri, object cookies, object rule, object route_override, bint secure)
@cython.locals(fwd=Forward)
cpdef Forward new_forward(object member, bint sticky, object set_cookie, long long reply_timeout_ms, bint probe, str activation)
