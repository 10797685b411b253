# C types for balancer/dataplane/stats.py in the compiled build (setup.py): the exchange makes
# the request's one observation with a C call (exchange.pxd cimports TrafficStats), and the
# bucket of a latency is found by a C loop over C doubles rather than two bisect calls.
cimport cython

cdef tuple _BOUNDS
cdef Py_ssize_t _N_BOUNDS, _N_BUCKETS, _N_CLASSES
cdef tuple _CLASS_OF

cdef class Answers:
    # the counts as C integers (16: LATENCY_BUCKETS and +Inf; 5: STATUS_CLASSES; a unit test
    # checks the sizes against the .py)
    cdef long long _first_byte[16]
    cdef long long _total[16]
    cdef long long _classes[5]
    cdef public double first_byte_sum, total_sum

    @cython.locals(i=Py_ssize_t, c=int)
    cpdef void observe(self, double first_byte, double total, int status) except *
    @cython.locals(i=Py_ssize_t)
    cpdef void add(self, Answers other) except *

@cython.locals(i=Py_ssize_t, bound=double)
cdef Py_ssize_t _bucket(double seconds) except -1

cdef class TrafficStats:
    cdef public Py_ssize_t accepted
    cdef public dict refused, rejected, answers, retries
    cdef dict _by_worker

    @cython.locals(a=Answers, members=dict)
    cpdef void answered(self, str worker, str member, int status, double first_byte,
                        double total) except *
    cdef Answers _answers_for(self, str worker, str member)
