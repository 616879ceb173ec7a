/* relay.net._sysio: the copy path's, the accept loop's and the backend connect's system
 * calls, without what the socket module's methods wrap around them (relay/net/sysio.py is
 * the interface, with the pure-Python fallback used where this was not built).
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
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

/* recv(2) into (receive, with `flags` besides MSG_DONTWAIT) or send(2) from (MSG_NOSIGNAL |
 * MSG_DONTWAIT) len bytes at buf on fd, again after EINTR once any Python signal handler
 * ran; the count, or -1 with the exception set (OSError from errno, or the handler's) */
static ssize_t
io_call(int fd, void *buf, size_t len, int flags, int receive)
{
    ssize_t n;

    for (;;) {
        if (receive)
            n = recv(fd, buf, len, flags | MSG_DONTWAIT);
        else
            n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
}

/* recv(2) into (receive) or send(2) from a buffer (data) on fd; the count or NULL */
static PyObject *
transfer_fd(int fd, PyObject *data, int receive)
{
    Py_buffer view;
    ssize_t n;

    if (PyObject_GetBuffer(data, &view, receive ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return NULL;
    if (receive && view.len == 0) {  /* as socket.recv_into: 0, where recv(2) says EAGAIN */
        PyBuffer_Release(&view);
        return PyLong_FromLong(0);
    }
    n = io_call(fd, view.buf, (size_t)view.len, 0, receive);
    PyBuffer_Release(&view);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *
transfer(PyObject *const *args, Py_ssize_t nargs, const char *name, int receive)
{
    int fd;

    if (want_args(nargs, 2, name) < 0 || fd_arg(args[0], &fd) < 0)
        return NULL;
    return transfer_fd(fd, args[1], receive);
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

/* ---- Socket: a session's socket that is only its number -----------------------------------
 *
 * What relay does with a client's or a backend's socket (fileno, getsockopt SO_ERROR, recv
 * of a PROXY header, send of one, getsockname, shutdown, close), as the socket module's
 * methods of the same names, none of which waits. Made by accept() and connect() below:
 * making a socket.socket costs a getsockname(2) (the socket module checks a number it is
 * given) or a release of the GIL around socket(2), and its connect_ex parses the address
 * tuple, runs an audit hook and releases the GIL again, as do its shutdown and close. Like
 * socket.socket, one left unclosed warns (ResourceWarning) and is closed when it goes. */

typedef struct {
    PyObject_HEAD
    int fd;  /* -1 once closed */
} SocketObject;

static PyTypeObject Socket_Type;

static void
socket_finalize(PyObject *self)
{
    SocketObject *s = (SocketObject *)self;
    PyObject *type, *value, *traceback;

    if (s->fd < 0)
        return;
    int saved = errno;  /* (a finalizer runs anywhere: between a call and its errno read) */
    PyErr_Fetch(&type, &value, &traceback);
    if (PyErr_ResourceWarning(self, 1, "unclosed %R", self) &&
            PyErr_ExceptionMatches(PyExc_Warning))
        PyErr_WriteUnraisable(self);  /* (-W error made the warning an exception) */
    if (s->fd >= 0)  /* (the warning's handler may have closed it) */
        (void)close(s->fd);
    s->fd = -1;
    PyErr_Restore(type, value, traceback);
    errno = saved;
}

static void
socket_dealloc(PyObject *self)
{
    if (PyObject_CallFinalizerFromDealloc(self) < 0)
        return;  /* resurrected by the warning's handler */
    Py_TYPE(self)->tp_free(self);
}

/* a new Socket owning fd, or NULL (fd closed) */
static PyObject *
socket_from_fd(int fd)
{
    SocketObject *sock = PyObject_New(SocketObject, &Socket_Type);

    if (sock == NULL) {
        (void)close(fd);
        return NULL;
    }
    sock->fd = fd;
    return (PyObject *)sock;
}

/* drop a Socket nobody else holds (an error path): closed first, no ResourceWarning */
static void
socket_discard(PyObject *sock)
{
    SocketObject *s = (SocketObject *)sock;

    if (s->fd >= 0)
        (void)close(s->fd);
    s->fd = -1;
    Py_DECREF(sock);
}

static PyObject *
socket_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<relay.net._sysio.Socket fd=%d>", ((SocketObject *)self)->fd);
}

static PyObject *
socket_fileno(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(((SocketObject *)self)->fd);
}

/* close(): as socket.close(): a second close does nothing; ECONNRESET is not an error */
static PyObject *
socket_close(PyObject *self, PyObject *unused)
{
    SocketObject *s = (SocketObject *)self;
    int fd = s->fd;

    if (fd >= 0) {
        s->fd = -1;
        if (close(fd) < 0 && errno != ECONNRESET && errno != EINTR)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* shutdown(2) on fd: None, or NULL with OSError (the Socket's method and sysio.shutdown) */
static PyObject *
shutdown_fd(int fd, int how)
{
    if (shutdown(fd, how) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* an int option of fd: the value, or NULL with OSError (the Socket's getsockopt and
 * sysio.so_error) */
static PyObject *
int_option(int fd, int level, int option)
{
    int value = 0;
    socklen_t size = (socklen_t)sizeof(value);

    if (getsockopt(fd, level, option, &value, &size) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromLong(value);
}

static PyObject *
socket_shutdown(PyObject *self, PyObject *arg)
{
    int how;

    if (int_arg(arg, -1, &how) < 0)
        return NULL;
    return shutdown_fd(((SocketObject *)self)->fd, how);
}

/* getsockopt(level, option) -> int */
static PyObject *
socket_getsockopt(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int level, option;

    if (want_args(nargs, 2, "getsockopt") < 0 || int_arg(args[0], -1, &level) < 0 ||
            int_arg(args[1], -1, &option) < 0)
        return NULL;
    return int_option(((SocketObject *)self)->fd, level, option);
}

/* send(data) -> int: as sysio.send on this socket's number (closed: EBADF, as socket.send) */
static PyObject *
socket_send(PyObject *self, PyObject *arg)
{
    return transfer_fd(((SocketObject *)self)->fd, arg, 0);
}

/* recv(size[, flags]) -> bytes: recv(2) with MSG_DONTWAIT added; b"" at EOF */
static PyObject *
socket_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    long size;
    int flags = 0;
    ssize_t n;
    PyObject *data;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "recv() takes 1 or 2 arguments (%zd given)", nargs);
        return NULL;
    }
    size = PyLong_AsLong(args[0]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return NULL;
    }
    if (size > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "recv(): buffersize too large");
        return NULL;
    }
    if (nargs == 2) {
        long value = PyLong_AsLong(args[1]);
        if (value == -1 && PyErr_Occurred())
            return NULL;
        if (value < INT_MIN || value > INT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "recv(): flags out of range");
            return NULL;
        }
        flags = (int)value;
    }
    if (size == 0)  /* as socket.recv(0): b"", where recv(2) on an empty socket says EAGAIN */
        return PyBytes_FromStringAndSize(NULL, 0);
    data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (data == NULL)
        return NULL;
    n = io_call(((SocketObject *)self)->fd, PyBytes_AS_STRING(data), (size_t)size, flags, 1);
    if (n < 0) {
        Py_DECREF(data);
        return NULL;
    }
    if (n != size)
        _PyBytes_Resize(&data, (Py_ssize_t)n);  /* (NULL with an error set if it failed) */
    return data;
}

/* getsockname() -> (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6, as
 * socket.getsockname() */
static PyObject *
socket_getsockname(PyObject *self, PyObject *unused)
{
    struct sockaddr_storage ss;
    socklen_t len = (socklen_t)sizeof(ss);
    char text[INET6_ADDRSTRLEN + 1];

    if (getsockname(((SocketObject *)self)->fd, (struct sockaddr *)&ss, &len) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        Py_ssize_t size = ipv4_text(&sin->sin_addr, text);
        text[size] = '\0';
        return Py_BuildValue("(si)", text, (int)ntohs(sin->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", text, (int)ntohs(sin6->sin6_port),
                             (unsigned)ntohl(sin6->sin6_flowinfo),
                             (unsigned)sin6->sin6_scope_id);
    }
    errno = EAFNOSUPPORT;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyMethodDef socket_methods[] = {
    {"fileno", socket_fileno, METH_NOARGS, "fileno() -> int: the number, -1 once closed."},
    {"close", socket_close, METH_NOARGS, "close() -> None: close(2), once."},
    {"shutdown", socket_shutdown, METH_O, "shutdown(how) -> None: shutdown(2)."},
    {"getsockopt", (PyCFunction)(void (*)(void))socket_getsockopt, METH_FASTCALL,
     "getsockopt(level, option) -> int: getsockopt(2) of an int option."},
    {"send", socket_send, METH_O,
     "send(data) -> int: send(2) with MSG_NOSIGNAL and MSG_DONTWAIT; bytes taken."},
    {"recv", (PyCFunction)(void (*)(void))socket_recv, METH_FASTCALL,
     "recv(size[, flags]) -> bytes: recv(2) with MSG_DONTWAIT; b'' at EOF."},
    {"getsockname", socket_getsockname, METH_NOARGS,
     "getsockname() -> (host, port[, flowinfo, scope_id]): the local address."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Socket_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "relay.net._sysio.Socket",
    .tp_basicsize = sizeof(SocketObject),
    .tp_dealloc = socket_dealloc,
    .tp_repr = socket_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A session's TCP socket as its number (made by accept() and connect()).",
    .tp_methods = socket_methods,
    .tp_finalize = socket_finalize,
};

/* accept(sock, fd) -> (Socket, host, port) | None: accept4(2) on the listening socket whose
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
    PyObject *sock, *result;

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
    sock = socket_from_fd(client);  /* (NULL: client closed) */
    if (sock == NULL)
        return NULL;
    result = PyTuple_New(3);
    if (result != NULL) {
        PyObject *items[3] = {sock, PyUnicode_DecodeASCII(text, size, NULL),
                              PyLong_FromUnsignedLong(port)};
        for (int i = 0; i < 3; i++)
            PyTuple_SET_ITEM(result, i, items[i]);  /* (a NULL item: dropped below) */
        if (items[1] == NULL || items[2] == NULL) {
            Py_INCREF(sock);
            Py_CLEAR(result);
            socket_discard(sock);
        }
    } else {
        socket_discard(sock);
    }
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

/* so_error(sock, fd) -> int: getsockopt(SO_ERROR) on the socket whose number is fd (sock
 * is for the fallback): how a connect ended, or a socket's pending error. A method call on
 * the socket by name costs compiled code a type lookup and a bound call (~400 instructions
 * counted with callgrind); a module function is a vectorcall. */
static PyObject *
sysio_so_error(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;

    if (want_args(nargs, 2, "so_error") < 0 || int_arg(args[1], -1, &fd) < 0)
        return NULL;
    return int_option(fd, SOL_SOCKET, SO_ERROR);
}

/* shutdown(sock, fd, how) -> None: shutdown(2) on the socket whose number is fd */
static PyObject *
sysio_shutdown(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, how;

    if (want_args(nargs, 3, "shutdown") < 0 || int_arg(args[1], -1, &fd) < 0 ||
            int_arg(args[2], -1, &how) < 0)
        return NULL;
    return shutdown_fd(fd, how);
}

/* fileno(sock) -> int: sock.fileno(), directly for this module's Socket (others through their
 * own method) */
static PyObject *
sysio_fileno(PyObject *module, PyObject *sock)
{
    if (Py_IS_TYPE(sock, &Socket_Type))
        return socket_fileno(sock, NULL);
    return PyObject_CallMethod(sock, "fileno", NULL);
}

/* close(sock) -> None: sock.close(), directly for this module's Socket (other sockets, e.g. a
 * test's socket.socket, through their own close) */
static PyObject *
sysio_close(PyObject *module, PyObject *sock)
{
    if (Py_IS_TYPE(sock, &Socket_Type))
        return socket_close(sock, NULL);
    return PyObject_CallMethod(sock, "close", NULL);
}

/* a numeric address tuple, as socket.connect_ex takes it for AF_INET (host, port) and
 * AF_INET6 (host, port[, flowinfo[, scope_id]]; a "%zone" suffix of an IPv6 host is left to
 * scope_id, as the socket module does), into *addr; its length or -1 with an exception set:
 * OSError (EINVAL) for a host that is not a numeric address (relay connects to addresses
 * relay.net.resolve found, never to names: resolving here would block the loop) */
static socklen_t
sockaddr_arg(int family, PyObject *tuple, struct sockaddr_storage *addr)
{
    Py_ssize_t n, length = 0;
    const char *host;
    char text[INET6_ADDRSTRLEN];
    const char *zone;
    long port;
    void *dst;

    if (!PyTuple_Check(tuple) || (n = PyTuple_GET_SIZE(tuple)) < 2 ||
            n > (family == AF_INET6 ? 4 : 2)) {
        PyErr_SetString(PyExc_TypeError, "connect(): the address must be a (host, port) tuple");
        return (socklen_t)-1;
    }
    host = PyUnicode_Check(PyTuple_GET_ITEM(tuple, 0)) ?
        PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(tuple, 0), &length) : NULL;
    if (host == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "connect(): the host must be a str");
        return (socklen_t)-1;
    }
    port = PyLong_AsLong(PyTuple_GET_ITEM(tuple, 1));
    if (port == -1 && PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError))
        return (socklen_t)-1;
    if (port < 0 || port > 65535) {
        PyErr_Clear();
        PyErr_SetString(PyExc_OverflowError, "connect(): port must be 0-65535.");
        return (socklen_t)-1;
    }
    zone = family == AF_INET6 ? strchr(host, '%') : NULL;
    if ((size_t)length != strlen(host) ||  /* (an embedded NUL) */
            (zone ? (size_t)(zone - host) : strlen(host)) >= sizeof(text)) {
        errno = EINVAL;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, PyTuple_GET_ITEM(tuple, 0));
        return (socklen_t)-1;
    }
    memcpy(text, host, zone ? (size_t)(zone - host) : strlen(host) + 1);
    if (zone)
        text[zone - host] = '\0';
    memset(addr, 0, sizeof(*addr));
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)addr;
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        dst = &in4->sin_addr;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
        unsigned long flowinfo = 0, scope_id = 0;
        if (n >= 3) {
            flowinfo = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(tuple, 2));
            if (flowinfo == (unsigned long)-1 && PyErr_Occurred())
                return (socklen_t)-1;
        }
        if (n == 4) {
            scope_id = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(tuple, 3));
            if (scope_id == (unsigned long)-1 && PyErr_Occurred())
                return (socklen_t)-1;
        }
        if (flowinfo > 0xfffff || scope_id > UINT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "connect(): flowinfo or scope_id out of range");
            return (socklen_t)-1;
        }
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_flowinfo = htonl((uint32_t)flowinfo);
        in6->sin6_scope_id = (uint32_t)scope_id;
        dst = &in6->sin6_addr;
    } else {
        errno = EAFNOSUPPORT;
        PyErr_SetFromErrno(PyExc_OSError);
        return (socklen_t)-1;
    }
    if (inet_pton(family, text, dst) != 1) {
        errno = EINVAL;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, PyTuple_GET_ITEM(tuple, 0));
        return (socklen_t)-1;
    }
    return family == AF_INET ? (socklen_t)sizeof(struct sockaddr_in)
                             : (socklen_t)sizeof(struct sockaddr_in6);
}

/* connect(family, address, nodelay) -> (Socket, errno): a non-blocking, close-on-exec TCP
 * socket (with TCP_NODELAY if nodelay), its connect(2) started; errno 0 (connected),
 * EINPROGRESS (EPOLLOUT tells) or why it failed at once. OSError only when no socket could
 * be made. */
static PyObject *
sysio_connect(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int family, nodelay, fd, err = 0, one = 1, saved;
    struct sockaddr_storage addr;
    socklen_t size;
    PyObject *sock, *code, *result;

    if (want_args(nargs, 3, "connect") < 0 || int_arg(args[0], -1, &family) < 0)
        return NULL;
    nodelay = PyObject_IsTrue(args[2]);
    if (nodelay < 0)
        return NULL;
    size = sockaddr_arg(family, args[1], &addr);
    if (size == (socklen_t)-1)
        return NULL;
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (nodelay && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, (socklen_t)sizeof(one)) < 0) {
        saved = errno;
        (void)close(fd);
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (connect(fd, (struct sockaddr *)&addr, size) < 0) {
        err = errno;
        if (err == EINTR) {  /* the connect goes on without us (connect(2)): as EINPROGRESS */
            err = EINPROGRESS;
            if (PyErr_CheckSignals() < 0) {
                (void)close(fd);
                return NULL;
            }
        }
    }
    sock = socket_from_fd(fd);
    if (sock == NULL)
        return NULL;
    code = PyLong_FromLong(err);
    result = code == NULL ? NULL : PyTuple_New(2);
    if (result == NULL) {
        Py_XDECREF(code);
        socket_discard(sock);
        return NULL;
    }
    PyTuple_SET_ITEM(result, 0, sock);
    PyTuple_SET_ITEM(result, 1, code);
    return result;
}

static PyMethodDef sysio_methods[] = {
    {"recv_into", (PyCFunction)(void (*)(void))sysio_recv_into, METH_FASTCALL,
     "recv_into(fd, buffer) -> int: recv(2) on a non-blocking socket; 0 at EOF."},
    {"send", (PyCFunction)(void (*)(void))sysio_send, METH_FASTCALL,
     "send(fd, data) -> int: send(2) with MSG_NOSIGNAL on a non-blocking socket."},
    {"accept", (PyCFunction)(void (*)(void))sysio_accept, METH_FASTCALL,
     "accept(sock, fd) -> (Socket, host, port) | None: accept4(2), the new socket "
     "non-blocking."},
    {"epoll_ctl", (PyCFunction)(void (*)(void))sysio_epoll_ctl, METH_FASTCALL,
     "epoll_ctl(epoll, epfd, op, fd, events) -> None: epoll_ctl(2)."},
    {"epoll_wait", (PyCFunction)(void (*)(void))sysio_epoll_wait, METH_FASTCALL,
     "epoll_wait(epoll, epfd, timeout, maxevents) -> [(fd, events), ...]: epoll_wait(2)."},
    {"linger_reset", (PyCFunction)(void (*)(void))sysio_linger_reset, METH_FASTCALL,
     "linger_reset(sock, fd) -> None: SO_LINGER 0, close() then sends RST."},
    {"so_error", (PyCFunction)(void (*)(void))sysio_so_error, METH_FASTCALL,
     "so_error(sock, fd) -> int: getsockopt(2) SO_ERROR."},
    {"shutdown", (PyCFunction)(void (*)(void))sysio_shutdown, METH_FASTCALL,
     "shutdown(sock, fd, how) -> None: shutdown(2)."},
    {"close", sysio_close, METH_O, "close(sock) -> None: the socket's close()."},
    {"fileno", sysio_fileno, METH_O, "fileno(sock) -> int: the socket's number."},
    {"connect", (PyCFunction)(void (*)(void))sysio_connect, METH_FASTCALL,
     "connect(family, address, nodelay) -> (Socket, errno): a non-blocking TCP socket, "
     "connecting."},
    {NULL, NULL, 0, NULL},
};

static int
sysio_exec(PyObject *module)
{
    if (PyType_Ready(&Socket_Type) < 0)
        return -1;
    Py_INCREF(&Socket_Type);
    if (PyModule_AddObject(module, "Socket", (PyObject *)&Socket_Type) < 0) {
        Py_DECREF(&Socket_Type);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot sysio_slots[] = {
    {Py_mod_exec, sysio_exec},
    {0, NULL},
};

static struct PyModuleDef sysio_module = {
    PyModuleDef_HEAD_INIT, "relay.net._sysio",
    "The copy path's, the accept loop's and the backend connect's system calls "
    "(see relay/net/sysio.py).",
    0, sysio_methods, sysio_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__sysio(void)
{
    return PyModuleDef_Init(&sysio_module);
}
