/* relay.net._sysio: the copy path's and the accept loop's system calls, without what the
 * socket module's methods wrap around them (relay/net/sysio.py is the interface, with the
 * pure-Python fallback used where this was not built).
 *
 * Every call here is made on a non-blocking socket: it returns at once, so the GIL is kept
 * across it (the socket module releases and takes it again around each call: about 340
 * instructions, counted with callgrind, more than the rest of the wrapper). recv and send
 * also pass MSG_DONTWAIT, so a socket left blocking by mistake gives EAGAIN, never a wait
 * that would stop every thread (accept4 has no such flag: the listening socket must be
 * non-blocking, as relay.net.resolve.listening_socket makes it). Arguments are
 * positional (METH_FASTCALL: no keyword parsing), and accept's address is formatted here
 * for IPv4 (glibc's inet_ntop goes through vfprintf). Errors raise OSError from errno, as
 * the socket module does (BlockingIOError for EAGAIN, ConnectionResetError...), after
 * running any Python signal handler an EINTR brought, as PEP 475 asks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

static int
fd_arg(PyObject *obj, int *fd)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "file descriptor out of range");
        return -1;
    }
    *fd = (int)value;
    return 0;
}

/* an int argument; a value beyond a C int is `outside` (an op epoll_ctl refuses with
 * EINVAL, as the fallback does), not truncated into another valid one */
static int
int_arg(PyObject *obj, int outside, int *out)
{
    long value = PyLong_AsLong(obj);
    if (value == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        value = (long)outside;
    }
    *out = (value < INT_MIN || value > INT_MAX) ? outside : (int)value;
    return 0;
}

static int
want_args(Py_ssize_t nargs, Py_ssize_t expected, const char *name)
{
    if (nargs == expected)
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)",
                 name, expected, nargs);
    return -1;
}

/* recv(2) into (receive) or send(2) from a buffer, args (fd, buffer); the count or NULL */
static PyObject *
transfer(PyObject *const *args, Py_ssize_t nargs, const char *name, int receive)
{
    int fd;
    Py_buffer view;
    ssize_t n;
    int saved;

    if (want_args(nargs, 2, name) < 0 || fd_arg(args[0], &fd) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[1], &view, receive ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return NULL;
    if (receive && view.len == 0) {  /* as socket.recv_into: 0, where recv(2) says EAGAIN */
        PyBuffer_Release(&view);
        return PyLong_FromLong(0);
    }
    for (;;) {
        if (receive)
            n = recv(fd, view.buf, (size_t)view.len, MSG_DONTWAIT);
        else
            n = send(fd, view.buf, (size_t)view.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0 || errno != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    saved = errno;
    PyBuffer_Release(&view);
    if (n < 0) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromSsize_t(n);
}

/* recv_into(fd, buffer) -> int: recv(2) into a writable buffer; 0 at EOF */
static PyObject *
sysio_recv_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return transfer(args, nargs, "recv_into", 1);
}

/* send(fd, data) -> int: send(2) with MSG_NOSIGNAL (EPIPE, never SIGPIPE) and MSG_DONTWAIT;
 * bytes taken */
static PyObject *
sysio_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return transfer(args, nargs, "send", 0);
}

/* "a.b.c.d" for an IPv4 address in network order; out holds at least 16 bytes */
static Py_ssize_t
ipv4_text(const struct in_addr *addr, char *out)
{
    const unsigned char *b = (const unsigned char *)&addr->s_addr;
    char *p = out;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100) {
            *p++ = (char)('0' + v / 100);
            v %= 100;
            *p++ = (char)('0' + v / 10);
        } else if (v >= 10) {
            *p++ = (char)('0' + v / 10);
        }
        *p++ = (char)('0' + v % 10);
        if (i < 3)
            *p++ = '.';
    }
    return p - out;
}

/* accept(sock, fd) -> (fd, host, port) | None: accept4(2) on the listening socket whose
 * number is fd (sock is for the Python fallback); None when no client is waiting (EAGAIN:
 * no exception built per wake-up). The new socket is non-blocking and close-on-exec. host
 * is the peer's address as text, as socket.accept() gives it ("" for a family other than
 * IPv4 and IPv6). */
static PyObject *
sysio_accept(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, client;
    struct sockaddr_storage ss;
    socklen_t len;
    char text[INET6_ADDRSTRLEN + 1];
    Py_ssize_t size = 0;
    unsigned port = 0;
    PyObject *result;

    if (want_args(nargs, 2, "accept") < 0 || fd_arg(args[1], &fd) < 0)
        return NULL;
    for (;;) {
        len = (socklen_t)sizeof(ss);
        client = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client >= 0 || errno != EINTR)
            break;
        if (PyErr_CheckSignals() < 0)
            return NULL;
    }
    if (client < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            Py_RETURN_NONE;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (ss.ss_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        size = ipv4_text(&sin->sin_addr, text);
        port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)) != NULL)
            size = (Py_ssize_t)strlen(text);
        port = ntohs(sin6->sin6_port);
    }
    result = PyTuple_New(3);
    if (result != NULL) {
        PyObject *items[3] = {PyLong_FromLong(client), PyUnicode_DecodeASCII(text, size, NULL),
                              PyLong_FromUnsignedLong(port)};
        for (int i = 0; i < 3; i++)
            PyTuple_SET_ITEM(result, i, items[i]);  /* (a NULL item: dropped below) */
        if (items[0] == NULL || items[1] == NULL || items[2] == NULL)
            Py_CLEAR(result);
    }
    if (result == NULL)
        close(client);  /* nobody else holds it */
    return result;
}

/* epoll_ctl(epoll, epfd, op, fd, events) -> None: epoll_ctl(2) on the epoll instance epfd
 * (epoll, the select.epoll object, is for the Python fallback) */
static PyObject *
sysio_epoll_ctl(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int epfd, op, fd;
    unsigned long mask;
    struct epoll_event ev;

    if (want_args(nargs, 5, "epoll_ctl") < 0 || fd_arg(args[1], &epfd) < 0)
        return NULL;
    if (int_arg(args[2], -1, &op) < 0)  /* -1: EINVAL from the kernel */
        return NULL;
    if (fd_arg(args[3], &fd) < 0)
        return NULL;
    mask = PyLong_AsUnsignedLong(args[4]);
    if (mask == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    memset(&ev, 0, sizeof(ev));
    ev.events = (uint32_t)mask;
    ev.data.fd = fd;
    if (epoll_ctl(epfd, op, fd, &ev) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

#define MAX_WAIT_EVENTS 4096
#define STACK_EVENTS 1024  /* the reactor's MAX_EVENTS: no allocation per turn */

/* epoll_wait(epoll, epfd, timeout, maxevents) -> [(fd, events), ...]: epoll_wait(2),
 * timeout in seconds as select.epoll.poll takes it (rounded up to a millisecond; < 0: no
 * limit). The GIL is released only for a wait that may block (timeout != 0). A signal
 * (EINTR) runs Python's handlers and returns no events: the caller's loop polls again. */
static PyObject *
sysio_epoll_wait(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int epfd, maxevents, ms, n, saved;
    double timeout;
    struct epoll_event stack[STACK_EVENTS];
    struct epoll_event *events = stack;
    PyObject *result;

    if (want_args(nargs, 4, "epoll_wait") < 0 || fd_arg(args[1], &epfd) < 0)
        return NULL;
    timeout = PyFloat_AsDouble(args[2]);
    if (timeout == -1.0 && PyErr_Occurred())
        return NULL;
    if (timeout != timeout) {  /* (a cast of NaN to int is undefined) */
        PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
        return NULL;
    }
    if (int_arg(args[3], 0, &maxevents) < 0)  /* 0: refused below */
        return NULL;
    if (maxevents <= 0 || maxevents > MAX_WAIT_EVENTS) {
        PyErr_SetString(PyExc_ValueError, "maxevents out of range");
        return NULL;
    }
    if (timeout < 0)
        ms = -1;
    else if (timeout * 1000.0 >= (double)INT_MAX)
        ms = INT_MAX;
    else {
        double whole = timeout * 1000.0;
        ms = (int)whole;
        if ((double)ms < whole)
            ms++;  /* rounded up, as select.epoll.poll does: never a wake-up before a timer */
    }
    if (maxevents > STACK_EVENTS) {
        events = PyMem_Malloc(sizeof(struct epoll_event) * (size_t)maxevents);
        if (events == NULL)
            return PyErr_NoMemory();
    }
    if (ms == 0) {
        n = epoll_wait(epfd, events, maxevents, 0);
    } else {
        Py_BEGIN_ALLOW_THREADS
        n = epoll_wait(epfd, events, maxevents, ms);
        Py_END_ALLOW_THREADS
    }
    saved = errno;
    if (n < 0) {
        if (events != stack)
            PyMem_Free(events);
        if (saved != EINTR) {
            errno = saved;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        if (PyErr_CheckSignals() < 0)
            return NULL;
        return PyList_New(0);
    }
    result = PyList_New(n);
    for (int i = 0; result != NULL && i < n; i++) {
        PyObject *pair = PyTuple_New(2);
        PyObject *fd = PyLong_FromLong(events[i].data.fd);
        PyObject *mask = PyLong_FromUnsignedLong(events[i].events);
        if (pair == NULL || fd == NULL || mask == NULL) {
            Py_XDECREF(pair);
            Py_XDECREF(fd);
            Py_XDECREF(mask);
            Py_CLEAR(result);
            break;
        }
        PyTuple_SET_ITEM(pair, 0, fd);
        PyTuple_SET_ITEM(pair, 1, mask);
        PyList_SET_ITEM(result, i, pair);
    }
    if (events != stack)
        PyMem_Free(events);
    return result;
}

/* linger_reset(sock, fd) -> None: SO_LINGER 0 on the socket whose number is fd (sock is for
 * the Python fallback), so that close() sends RST, not FIN. The socket module's setsockopt
 * takes a bytes value only after two failed argument parses, each formatting its error
 * message (about 12k instructions per call, counted with callgrind). A closed socket's
 * number (-1) or any other invalid one gives EBADF, an OSError, as the fallback's setsockopt
 * on a closed socket does (reset_on_close ignores OSError; fd_arg's ValueError escaped it). */
static PyObject *
sysio_linger_reset(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    struct linger lg = {1, 0};

    if (want_args(nargs, 2, "linger_reset") < 0 || int_arg(args[1], -1, &fd) < 0)
        return NULL;
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, (socklen_t)sizeof(lg)) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef sysio_methods[] = {
    {"recv_into", (PyCFunction)(void (*)(void))sysio_recv_into, METH_FASTCALL,
     "recv_into(fd, buffer) -> int: recv(2) on a non-blocking socket; 0 at EOF."},
    {"send", (PyCFunction)(void (*)(void))sysio_send, METH_FASTCALL,
     "send(fd, data) -> int: send(2) with MSG_NOSIGNAL on a non-blocking socket."},
    {"accept", (PyCFunction)(void (*)(void))sysio_accept, METH_FASTCALL,
     "accept(sock, fd) -> (fd, host, port) | None: accept4(2), the new socket non-blocking."},
    {"epoll_ctl", (PyCFunction)(void (*)(void))sysio_epoll_ctl, METH_FASTCALL,
     "epoll_ctl(epoll, epfd, op, fd, events) -> None: epoll_ctl(2)."},
    {"epoll_wait", (PyCFunction)(void (*)(void))sysio_epoll_wait, METH_FASTCALL,
     "epoll_wait(epoll, epfd, timeout, maxevents) -> [(fd, events), ...]: epoll_wait(2)."},
    {"linger_reset", (PyCFunction)(void (*)(void))sysio_linger_reset, METH_FASTCALL,
     "linger_reset(sock, fd) -> None: SO_LINGER 0, close() then sends RST."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sysio_module = {
    PyModuleDef_HEAD_INIT, "relay.net._sysio",
    "The copy path's and the accept loop's system calls (see relay/net/sysio.py).",
    0, sysio_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__sysio(void)
{
    return PyModuleDef_Init(&sysio_module);
}
