# The C layout of TimerWheel in the compiled build (setup.py; Cython reads it beside the .py):
# the client connection arms and disarms its deadline with C calls (downstream.pxd).
cimport cython

cdef class TimerWheel:
    cdef public object loop, handle
    cdef public dict slots, last_bucket
    cdef public double tick
    cdef public long long handle_slot, last_slot

    @cython.locals(slot="long long", bucket=dict, last=dict, found=dict)
    cpdef long long add(self, object entry, double when) except -1
    @cython.locals(bucket=dict, last=dict)
    cpdef void remove(self, object entry, long long slot) except *
    cdef void _schedule(self, long long slot) except *
