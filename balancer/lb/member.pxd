# C types for balancer/lb/member.py (Cython's pure-Python mode; see setup.py). Member is an
# extension type: its fields are C fields, and the engine's per-request reads and writes are
# C methods (a vtable call) that SharedMember (shared.pxd) overrides to use its shared record.
cimport cython

cdef long long _LB_VALUE_MAX


cdef class Member:
    cdef public object config
    cdef public str name
    cdef public str route
    cdef public str domain
    cdef public str redirect
    cdef public long long distance
    cdef public long long lbfactor
    cdef public object activation
    cdef public long long retries
    cdef public long long retry_interval
    cdef public long long recovery_options
    cdef public long long busy_limit
    cdef public long long reply_timeout
    cdef public tuple fail_on_status
    cdef public object state
    cdef public long long lb_mult
    cdef public long long lb_value
    cdef public object first_error_time
    cdef public object last_error_time
    cdef public str last_error_reason
    cdef public long long elected
    cdef public long long sessions
    cdef public long long errors
    cdef public long long client_errors
    cdef public long long reply_timeouts
    cdef public long long bytes_read
    cdef public long long bytes_transferred
    cdef public long long busy
    cdef public long long max_busy
    cdef public long long sticky_hits
    cdef public long long sticky_misses
    cdef public long long failovers
    cdef public bint chosen_since_maintenance
    cdef public double last_reset
    cdef public bint health_down
    cdef public object slow_start_since
    cdef public double slow_start_carry
    # read_route_bytes' cache: the route str it was made from, and its bytes
    cdef str _route_key
    cdef bytes _route_bytes

    @cython.locals(busy=cython.longlong)
    cpdef void note_busy(self, long long delta) except *
    cpdef void clear_error_times(self) except *

    cdef object read_state(self)
    cdef object read_activation(self)
    cdef long long read_distance(self) except? -1
    cdef long long read_lb_value(self) except? -1
    cdef long long read_lb_mult(self) except? -1
    cdef str read_route(self)
    cdef long long read_busy(self) except? -1
    cdef long long read_busy_limit(self) except? -1
    cdef long long read_reply_timeout(self) except? -1
    cdef bint ramping(self) except -1
    @cython.locals(value=cython.longlong)
    cdef void add_lb_value(self, long long delta) except *
    cdef void set_lb_value(self, long long value) except *
    cdef void note_elected(self, bint new_session) except *
    cdef void add_traffic(self, long long sent, long long received) except *
    cdef void add_sticky_hit(self) except *
    cdef bytes read_route_bytes(self)
    cpdef void forget_route_bytes(self) except *
