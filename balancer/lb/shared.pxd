# C types for balancer/lb/shared.py (Cython's pure-Python mode: the .py is the source; see
# setup.py). A shared field is a typed-memoryview load or store in C instead of a Python-level
# descriptor call: the engine reads ~30 of them per request.
cimport cython
from balancer.lb.member cimport Member
from balancer.lb.settings cimport LbSettings

cdef Py_ssize_t TEXT_VERSION, _BUSY_WORD, _PROCS


cdef class _Record:
    cdef long long[::1] words
    cdef double[::1] floats
    cdef object view
    cdef Py_ssize_t base
    cdef Py_ssize_t slot
    cdef long long text_version
    cdef list texts


@cython.locals(version=cython.longlong, at=Py_ssize_t, k=Py_ssize_t, end=Py_ssize_t)
cdef list _texts(_Record rec)


cdef _Record _record_of(object obj)


@cython.locals(at=Py_ssize_t, k=Py_ssize_t, total=cython.longlong)
cdef long long _busy_sum(_Record rec)


@cython.locals(own=Py_ssize_t, mine=cython.longlong, busy=cython.longlong)
cdef void _note_busy(_Record rec, long long delta) except *

# where SharedNumbers finds each field in a record
cdef Py_ssize_t _STATE, _ACTIVATION, _DISTANCE, _LB_VALUE, _LB_MULT, _ROUTE, _BUSY_LIMIT
cdef Py_ssize_t _REPLY_TIMEOUT, _SLOW_START_SINCE, _FIRST_ERROR_TIME, _LAST_ERROR_TIME
cdef Py_ssize_t _ELECTED, _CHOSEN, _SESSIONS, _BYTES_TRANSFERRED, _BYTES_READ, _STICKY_HITS
cdef Py_ssize_t _MAX_BUSY
cdef long long _LB_VALUE_MAX
cdef tuple _STATES, _ACTIVATIONS


cdef class SharedNumbers(Member):
    cdef public _Record _rec

    cpdef void note_busy(self, long long delta) except *
    @cython.locals(rec=_Record)
    cpdef void clear_error_times(self) except *
    @cython.locals(rec=_Record)
    cdef object read_state(self)
    @cython.locals(rec=_Record)
    cdef object read_activation(self)
    @cython.locals(rec=_Record)
    cdef long long read_distance(self) except? -1
    @cython.locals(rec=_Record)
    cdef long long read_lb_value(self) except? -1
    @cython.locals(rec=_Record)
    cdef long long read_lb_mult(self) except? -1
    cdef str read_route(self)
    cdef long long read_busy(self) except? -1
    @cython.locals(rec=_Record)
    cdef long long read_busy_limit(self) except? -1
    @cython.locals(rec=_Record)
    cdef long long read_reply_timeout(self) except? -1
    @cython.locals(rec=_Record, since=cython.double)
    cdef bint ramping(self) except -1
    @cython.locals(rec=_Record, value=cython.longlong)
    cdef void add_lb_value(self, long long delta) except *
    @cython.locals(rec=_Record)
    cdef void set_lb_value(self, long long value) except *
    @cython.locals(rec=_Record)
    cdef void note_elected(self, bint new_session) except *
    @cython.locals(rec=_Record)
    cdef void add_traffic(self, long long sent, long long received) except *
    @cython.locals(rec=_Record)
    cdef void add_sticky_hit(self) except *


cdef class _Word:
    cdef readonly Py_ssize_t at


cdef class _Float(_Word):
    pass


cdef class _Plain(_Word):
    pass


cdef class _Bool(_Word):
    pass


cdef class _Choice(_Word):
    cdef readonly tuple values
    cdef readonly dict index


cdef class _Text:
    cdef readonly Py_ssize_t index


cdef class _Busy:
    pass


cdef Py_ssize_t _METHOD, _LB_RETRIES, _SET_SESSION_COOKIE, _STICKY_SESSION
cdef tuple _METHODS


cdef class SettingsNumbers(LbSettings):
    cdef public _Record _rec

    @cython.locals(rec=_Record)
    cdef object read_method(self)
    @cython.locals(rec=_Record)
    cdef long long read_lb_retries(self) except? -1
    @cython.locals(rec=_Record)
    cdef bint read_set_session_cookie(self) except -1
    @cython.locals(rec=_Record)
    cdef bint read_sticky_session(self) except -1
    cdef str read_session_path(self)
    cdef str read_session_cookie(self)
