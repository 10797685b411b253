# C types for balancer/lb/shared.py (Cython's pure-Python mode: the .py is the source; see
# setup.py). A shared field is a typed-memoryview load or store in C instead of a Python-level
# descriptor call: the engine reads ~30 of them per request.
cimport cython

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
cdef void _note_busy(object member, _Record rec, long long delta) except *


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
