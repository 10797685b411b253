# C types for balancer/dataplane/read_buffers.py in the compiled build (setup.py): the member
# connection (upstream.pxd) takes its read buffer with a C call, and whether a buffer is still
# viewed is the bytearray's export count, read from its struct.
cdef Py_ssize_t SIZE, POOLED
cdef bytearray SCRATCH
cdef list _POOL
cdef bint _PURE

cdef extern from *:
    """
    /* how many buffer views of a bytearray are alive (CPython refuses to resize it then) */
    #define pyjk_bytearray_exports(b) (((PyByteArrayObject *)(b))->ob_exports)
    """
    Py_ssize_t _exports "pyjk_bytearray_exports" (bytearray b)

cpdef bytearray take(bytearray held)
cpdef bint in_use(bytearray buf) except -1
cpdef bint viewable(bytearray buf) noexcept
cpdef Py_ssize_t pooled()
