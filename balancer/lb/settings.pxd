# C types for balancer/lb/settings.py (Cython's pure-Python mode; see setup.py). LbSettings is an
# extension type; the plan's per-request reads are C methods SharedSettings (shared.pxd)
# overrides to read its shared record.
cimport cython

cdef class LbSettings:
    cdef public bint sticky_session
    cdef public bint sticky_session_force
    cdef public object method
    cdef public object lock
    cdef public long long retries
    cdef public long long lb_retries
    cdef public long long retry_interval
    cdef public long long recover_time
    cdef public long long error_escalation_time
    cdef public long long max_reply_timeouts
    cdef public str session_cookie
    cdef public str session_path
    cdef public bint set_session_cookie
    cdef public str session_cookie_path

    cdef object read_method(self)
    cdef long long read_lb_retries(self) except? -1
    cdef bint read_set_session_cookie(self) except -1
    cdef bint read_sticky_session(self) except -1
    cdef str read_session_path(self)
    cdef str read_session_cookie(self)


# kind is any class (an Enum's is EnumType): Cython would otherwise take it from the tuple's
# annotation as exactly ``type`` and refuse an Enum
@cython.locals(kind=object, minimum=object)
cpdef object check_value(str where, str name, object value, tuple rule)
