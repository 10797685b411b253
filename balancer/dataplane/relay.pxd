# C types for balancer/dataplane/relay.py in the compiled build (setup.py): the exchange calls
# these at C level (it cimports them: they take values, not the member connection, so the
# .pxd files form no cycle through relay).
cimport cython
from balancer.dataplane.request cimport Request

cpdef int body_mode(Request req, int status, object content_length, bint chunked) except -1
@cython.locals(parts=list)
cdef list _status_and_fields(int status, bytes reason, list headers, object fields)
@cython.locals(parts=list)
cpdef bytes interim_head(int status, bytes reason, list headers, object fields)
@cython.locals(parts=list)
cpdef list final_head(int status, bytes reason, list headers, object fields, object set_cookies,
                       int mode,
                       Request req, bint keep_alive, object set_cookie, object server)
@cython.locals(parts=list)
cpdef bytes switch_head(bytes reason, list headers, object fields, object upgrade)
cpdef bint backend_sets(bytes cookie, object set_cookies) except -1
