/* The sidecar's per-request loops in C; the pure-Python code in server.py and pool.py stays
 * the reference.
 *
 * route_requests: the client side. It cuts well-formed multibulk requests (every element a
 * bulk string, canonical lengths, CRLF where CRLF belongs) out of a client buffer, takes the
 * routing decision for each from the route table (route_table.py builds it once per routing
 * snapshot) and queues every request the decision sends to its shard, doing the same steps as
 * the Python loop through the C API on the same Python objects. It stops at the first request
 * it does not queue and says why: the end of the buffer, a request for Python's dispatcher (not
 * a plain single-key command), a request the route table hands to a route unit (its owner and
 * the reason), or bytes it does not claim (hiredis takes over from that request's first byte,
 * so errors and odd-but-accepted input behave exactly as without this module).
 *
 * deliver_replies: the shard side. It cuts complete replies out of a shard's read buffer (the
 * walk of resp.split_replies) and gives each to its waiting slot as the Python loop in
 * BackendConnection.data_received does. It hands length fields that are not plain decimal
 * (which a Redis server never sends) to that Python loop.
 *
 * write_now: a transport's write with the system call made in C while nothing is buffered.
 * FastReader, ShardReader, ShardWriter and Flusher: the methods uvloop and the flusher call on
 * every read and loop turn, in C; ClientCore, BackendCore and SlotCore: the C bases that hold
 * the fields these touch on every request.
 *
 * The two loops read the buffer only within its size and allocate nothing proportional to a
 * declared length, so garbage cannot make them read out of bounds or allocate without bound.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "_hotkeys.h"
#include "_latency.h"

#define MAX_ARGC (1024 * 1024)        /* like Redis and resp.MAX_MULTIBULK_LENGTH */
#define MAX_DIGITS 15                 /* lengths up to 10^15: far above any buffer */

/* Why route_requests stopped (server.py has the same names). */
#define STOP_END 0        /* at the end, or inside a request that is well-formed so far */
#define STOP_DISPATCH 1   /* at a complete request for Python's dispatcher */
#define STOP_UNCLAIMED 2  /* at bytes this scanner does not claim: hand over to hiredis */
#define STOP_ROUTE 3      /* at a request the route table hands to a route unit */

/* A canonical decimal at p[i..] ending in CRLF: "0" or [1-9][0-9]*.
 * Returns 1 and sets *value, *next (after the CRLF); 0 if more bytes are needed and the prefix
 * is canonical so far; -1 if not canonical. */
static int
canonical_number(const char *p, Py_ssize_t i, Py_ssize_t size, long long *value,
                 Py_ssize_t *next)
{
    long long v = 0;
    Py_ssize_t start = i;
    while (i < size) {
        char c = p[i];
        if (c >= '0' && c <= '9') {
            if (i - start >= MAX_DIGITS)
                return -1;
            if (i > start && p[start] == '0')
                return -1; /* leading zero */
            v = v * 10 + (c - '0');
            i++;
            continue;
        }
        if (c != '\r' || i == start)
            return -1;
        if (i + 1 >= size)
            return 0;
        if (p[i + 1] != '\n')
            return -1;
        *value = v;
        *next = i + 2;
        return 1;
    }
    return 0;
}

static int
get_buffer(PyObject *obj, const char **data, Py_ssize_t *size)
{
    if (PyBytes_CheckExact(obj)) {
        *data = PyBytes_AS_STRING(obj);
        *size = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyByteArray_CheckExact(obj)) {
        *data = PyByteArray_AS_STRING(obj);
        *size = PyByteArray_GET_SIZE(obj);
        return 0;
    }
    PyErr_SetString(PyExc_TypeError, "expected bytes or bytearray");
    return -1;
}

static PyObject *
slice(PyObject *obj, const char *data, Py_ssize_t size, Py_ssize_t start, Py_ssize_t end)
{
    if (start == 0 && end == size && PyBytes_CheckExact(obj)) {
        Py_INCREF(obj);
        return obj;
    }
    return PyBytes_FromStringAndSize(data + start, end - start);
}

/* -- the ring: key -> shard index, as Ring.lookup_function() computes it ------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t count;   /* tokens */
    uint32_t *tokens;   /* sorted positions on the circle */
    long *owners;       /* owner of each position, count + 1 (past the last wraps around) */
} RingObject;

static uint32_t
rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

/* MurmurHash3 x86_32: what mmh3.hash(key, seed, False) returns. */
static uint32_t
murmur3_32(const unsigned char *data, Py_ssize_t len, uint32_t seed)
{
    const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
    uint32_t h = seed, k;
    Py_ssize_t blocks = len / 4, i;
    for (i = 0; i < blocks; i++) {
        const unsigned char *b = data + 4 * i;
        k = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64;
    }
    const unsigned char *tail = data + 4 * blocks;
    k = 0;
    switch (len & 3) {
    case 3:
        k ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        k ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        k ^= tail[0];
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

/* The part of a key that is hashed, by the Redis Cluster hash tag rule. */
static void
hash_tag(const char **key, Py_ssize_t *len)
{
    const char *open = memchr(*key, '{', (size_t)*len);
    if (open != NULL) {
        Py_ssize_t start = open - *key + 1;
        const char *close = memchr(*key + start, '}', (size_t)(*len - start));
        if (close != NULL && close - *key > start) {
            *len = close - *key - start;
            *key += start;
        }
    }
}

/* The key's position on the circle (the hash of its hash tag); *whole says whether that is
 * also the hash of the whole key (no tag), which hot-key detection then reuses. */
static uint32_t
key_position(const char *key, Py_ssize_t len, int *whole)
{
    const char *tagged = key;
    Py_ssize_t tagged_len = len;
    hash_tag(&tagged, &tagged_len);
    *whole = tagged_len == len;
    return murmur3_32((const unsigned char *)tagged, tagged_len, 0);
}

/* The owner of a position: the first token >= it. */
static long
owner_at(RingObject *ring, uint32_t h)
{
    Py_ssize_t lo = 0, hi = ring->count;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (ring->tokens[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return ring->owners[lo];
}

/* The owner of a key: the Redis Cluster hash tag rule, then the first token >= its hash. */
static long
ring_owner(RingObject *ring, const char *key, Py_ssize_t len)
{
    int whole;
    return owner_at(ring, key_position(key, len, &whole));
}

static int
Ring_init(RingObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *tokens, *owners;
    static char *kwlist[] = {"tokens", "owners", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Ring", kwlist, &tokens, &owners))
        return -1;
    PyObject *t = PySequence_Fast(tokens, "tokens must be a sequence");
    if (t == NULL)
        return -1;
    PyObject *o = PySequence_Fast(owners, "owners must be a sequence");
    if (o == NULL) {
        Py_DECREF(t);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(t), i;
    if (n < 1 || PySequence_Fast_GET_SIZE(o) != n) {
        PyErr_SetString(PyExc_ValueError, "need as many owners as tokens, at least one");
        goto fail;
    }
    PyMem_Free(self->tokens);
    PyMem_Free(self->owners);
    self->count = 0;
    self->tokens = PyMem_New(uint32_t, n);
    self->owners = PyMem_New(long, n + 1);
    if (self->tokens == NULL || self->owners == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (i = 0; i < n; i++) {
        unsigned long long token = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(t, i));
        long owner = PyLong_AsLong(PySequence_Fast_GET_ITEM(o, i));
        if (PyErr_Occurred())
            goto fail;
        if (token > 0xffffffffULL || (i > 0 && token < self->tokens[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "tokens must be sorted positions below 2**32");
            goto fail;
        }
        self->tokens[i] = (uint32_t)token;
        self->owners[i] = owner;
    }
    self->owners[n] = self->owners[0];
    self->count = n;
    Py_DECREF(t);
    Py_DECREF(o);
    return 0;
fail:
    Py_DECREF(t);
    Py_DECREF(o);
    return -1;
}

static void
Ring_dealloc(RingObject *self)
{
    PyMem_Free(self->tokens);
    PyMem_Free(self->owners);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Ring_lookup(RingObject *self, PyObject *key)
{
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "key must be bytes");
        return NULL;
    }
    if (self->count == 0) {
        PyErr_SetString(PyExc_ValueError, "Ring not initialised");
        return NULL;
    }
    return PyLong_FromLong(ring_owner(self, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)));
}

static PyMethodDef Ring_methods[] = {
    {"lookup", (PyCFunction)Ring_lookup, METH_O, "lookup(key) -> index of the owning shard"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cachefleet.sidecar._speedups.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(tokens, owners): key -> shard index like Ring.lookup_function()",
    .tp_methods = Ring_methods,
    .tp_init = (initproc)Ring_init,
    .tp_new = PyType_GenericNew,
};

/* One request at p[pos..]: 1 when complete and well-formed (sets *end, *argc and the name's
 * and first key's spans in req, key_len -1 when argc < 2), 0 when well-formed so far but incomplete,
 * -1 when this scanner does not claim it. */
typedef struct {
    Py_ssize_t end, name_at, name_len, key_at, key_len;
    long long argc;
} Request;

static int
scan_one(const char *p, Py_ssize_t pos, Py_ssize_t size, Request *req)
{
    Py_ssize_t i = pos, next;
    long long argc, n, k;
    int r;
    req->key_len = -1;
    if (p[i] != '*')
        return -1;
    r = canonical_number(p, i + 1, size, &argc, &next);
    if (r == 0)
        return 0;
    if (r < 0 || argc < 1 || argc > MAX_ARGC)
        return -1;
    i = next;
    for (k = 0; k < argc; k++) {
        if (i >= size)
            return 0;
        if (p[i] != '$')
            return -1;
        r = canonical_number(p, i + 1, size, &n, &next);
        if (r <= 0)
            return r;
        /* payload and its CRLF; compare against what is left, never add to i first */
        if (n + 2 > (long long)(size - next))
            return 0;
        if (p[next + n] != '\r' || p[next + n + 1] != '\n')
            return -1;
        if (k == 0) {
            req->name_at = next;
            req->name_len = (Py_ssize_t)n;
        }
        else if (k == 1) {
            req->key_at = next;
            req->key_len = (Py_ssize_t)n;
        }
        i = next + (Py_ssize_t)n + 2;
    }
    req->end = i;
    req->argc = argc;
    return 1;
}

/* The buffer, its size and a start position within it, for a scan over an initialised ring. */
static int
scan_arguments(RingObject *ring, PyObject *buf, PyObject *pos_obj, const char **p,
               Py_ssize_t *size, Py_ssize_t *pos)
{
    if (ring->count == 0) {
        PyErr_SetString(PyExc_ValueError, "Ring not initialised");
        return -1;
    }
    if (get_buffer(buf, p, size) < 0)
        return -1;
    *pos = PyLong_AsSsize_t(pos_obj);
    if (*pos == -1 && PyErr_Occurred())
        return -1;
    if (*pos < 0 || *pos > *size) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        return -1;
    }
    return 0;
}

/* -- the route table: one routing decision per request ------------------------------------ */

/* The warm-up modes and the fast commands' classes (route_table.py has the same numbers). */
#define MODE_NONE 0
#define MODE_SHADOW 1
#define MODE_GRACE 2
#define MODE_DRAIN 3
#define CLASS_READ 0        /* a read the warm-up leaves alone */
#define CLASS_VALUE_READ 1  /* GET: shadowed in a shadow phase, falls back in a grace phase */
#define CLASS_WRITE 2       /* anything that changes a key */
#define REASON_SHADOW 3
#define REASON_GRACE 4
#define REASON_L1 5
#define SHADOW_SEED 0x5bd1e995u /* another hash of the key: its place in the shadow percentage */

typedef struct {
    PyObject_HEAD
    RingObject *ring;      /* key -> owner, the index of the owner's pool */
    PyObject *fast;        /* command name -> (spec, arity, class): what the fast path queues */
    PyObject *last_name;   /* the name of the last command looked up in fast (bytes), and */
    PyObject *last_entry;  /* its entry: a pipeline mostly repeats one command */
    Py_ssize_t pools;      /* owners are in [0, pools) */
    unsigned char *stops;  /* per owner: 0 = queue on the fast path, else the route reason */
    RingObject *other;     /* during a warm-up, the other ring (next or previous), same numbering */
    int mode;
    long shadow_basis_points; /* of 10000: the share of keys whose reads are shadowed */
    PyObject *tracker;     /* hot-key detection (a HotKeys), or NULL */
    PyObject *l1;          /* L1 entries, key -> (reply, expires monotonic ns, owner), or NULL */
    unsigned char *l1_ok;  /* per owner: 1 when its L1 entries may be served (its tracking link) */
    unsigned long long l1_hits; /* GETs this table answered from L1 */
    char retired;          /* another table replaced this one (FastReader re-arms its client) */
} RouteTableObject;

/* Whether a key falls inside the shadow percentage: by a hash independent of its ring position,
 * so the warm set only grows as the percentage rises. */
static int
in_shadow(const char *key, Py_ssize_t len, long basis_points)
{
    hash_tag(&key, &len);
    return (long)(murmur3_32((const unsigned char *)key, len, SHADOW_SEED) % 10000) < basis_points;
}

/* The decision for one key: its owner, and 0 (queue it) or the reason for a route unit.
 * RouteTable.decide in route_table.py is the same decision in Python. */
static int
route_decide(RouteTableObject *table, const char *key, Py_ssize_t len, uint32_t position,
             int klass, long *owner)
{
    long o = owner_at(table->ring, position);
    *owner = o;
    if (table->stops[o])
        return table->stops[o];
    if (table->mode == MODE_NONE || klass == CLASS_READ || owner_at(table->other, position) == o)
        return 0;
    if (table->mode == MODE_GRACE || klass == CLASS_WRITE)
        return table->mode == MODE_SHADOW ? REASON_SHADOW : REASON_GRACE;
    if (table->mode == MODE_DRAIN)
        return 0;
    return in_shadow(key, len, table->shadow_basis_points) ? REASON_SHADOW : 0;
}

static int
owners_within(RingObject *ring, Py_ssize_t pools)
{
    Py_ssize_t i;
    if (ring->count == 0)
        return 0;
    for (i = 0; i <= ring->count; i++)
        if (ring->owners[i] < 0 || ring->owners[i] >= pools)
            return 0;
    return 1;
}

static int
RouteTable_init(RouteTableObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *ring, *fast, *other = Py_None, *tracker = Py_None, *l1 = Py_None;
    Py_buffer stops, l1_ok = {0};
    int mode = MODE_NONE;
    long basis_points = 0;
    static char *kwlist[] = {"ring", "fast", "stops", "other", "mode", "shadow_basis_points",
                             "tracker", "l1", "l1_ok", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!y*|OilOOy*:RouteTable", kwlist, &RingType,
                                     &ring, &PyDict_Type, &fast, &stops, &other, &mode,
                                     &basis_points, &tracker, &l1, &l1_ok))
        return -1;
    int bad = stops.len == 0 || !owners_within((RingObject *)ring, stops.len);
    const char *why = "every ring owner needs an entry in stops";
    if (!bad && tracker != Py_None && !cf_hotkeys_check(tracker)) {
        bad = 1;
        why = "tracker must be an initialised HotKeys";
    }
    if (!bad && l1 != Py_None && (!PyDict_Check(l1) || l1_ok.len != stops.len)) {
        bad = 1;
        why = "l1 must be a dict, with an l1_ok byte per owner";
    }
    if (!bad && mode != MODE_NONE) {
        bad = mode != MODE_SHADOW && mode != MODE_GRACE && mode != MODE_DRAIN;
        why = "mode must be 0, 1 (shadow), 2 (grace) or 3 (drain)";
        if (!bad && (!PyObject_TypeCheck(other, &RingType) ||
                     !owners_within((RingObject *)other, stops.len))) {
            bad = 1;
            why = "a warm-up needs the other ring, its owners numbered like the pools";
        }
    }
    if (!bad && (basis_points < 0 || basis_points > 10000)) {
        bad = 1;
        why = "shadow_basis_points must be within 0..10000";
    }
    if (bad) {
        PyBuffer_Release(&stops);
        if (l1_ok.obj != NULL)
            PyBuffer_Release(&l1_ok);
        PyErr_SetString(PyExc_ValueError, why);
        return -1;
    }
    /* A copy of fast: the table's own, so the last look-up it remembers cannot go stale. */
    PyObject *own = PyDict_Copy(fast);
    unsigned char *copy = PyMem_Malloc((size_t)stops.len);
    unsigned char *ok = PyMem_Malloc((size_t)stops.len);
    if (own == NULL || copy == NULL || ok == NULL) {
        Py_XDECREF(own);
        PyMem_Free(copy);
        PyMem_Free(ok);
        PyBuffer_Release(&stops);
        if (l1_ok.obj != NULL)
            PyBuffer_Release(&l1_ok);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(copy, stops.buf, (size_t)stops.len);
    memset(ok, 0, (size_t)stops.len);
    if (l1_ok.obj != NULL) {
        memcpy(ok, l1_ok.buf, (size_t)stops.len);
        PyBuffer_Release(&l1_ok);
    }
    PyMem_Free(self->stops);
    PyMem_Free(self->l1_ok);
    self->stops = copy;
    self->l1_ok = ok;
    self->pools = stops.len;
    PyBuffer_Release(&stops);
    Py_XSETREF(self->tracker, tracker == Py_None ? NULL : Py_NewRef(tracker));
    Py_XSETREF(self->l1, l1 == Py_None ? NULL : Py_NewRef(l1));
    Py_INCREF(ring);
    Py_XSETREF(self->ring, (RingObject *)ring);
    Py_XSETREF(self->fast, own);
    Py_CLEAR(self->last_name);
    Py_CLEAR(self->last_entry);
    if (mode != MODE_NONE) {
        Py_INCREF(other);
        Py_XSETREF(self->other, (RingObject *)other);
    }
    else {
        Py_CLEAR(self->other);
    }
    self->mode = mode;
    self->shadow_basis_points = basis_points;
    return 0;
}

static void
RouteTable_dealloc(RouteTableObject *self)
{
    Py_XDECREF(self->ring);
    Py_XDECREF(self->fast);
    Py_XDECREF(self->last_name);
    Py_XDECREF(self->last_entry);
    Py_XDECREF(self->other);
    Py_XDECREF(self->tracker);
    Py_XDECREF(self->l1);
    PyMem_Free(self->stops);
    PyMem_Free(self->l1_ok);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
RouteTable_decide(RouteTableObject *self, PyObject *args)
{
    long owner;
    PyObject *key;
    int klass = CLASS_VALUE_READ;
    if (!PyArg_ParseTuple(args, "O!|i:decide", &PyBytes_Type, &key, &klass))
        return NULL;
    if (self->ring == NULL) {
        PyErr_SetString(PyExc_ValueError, "RouteTable not initialised");
        return NULL;
    }
    int whole;
    const char *data = PyBytes_AS_STRING(key);
    Py_ssize_t len = PyBytes_GET_SIZE(key);
    int reason = route_decide(self, data, len, key_position(data, len, &whole), klass, &owner);
    return Py_BuildValue("(li)", owner, reason);
}

static PyObject *
RouteTable_l1_hits(RouteTableObject *self, void *closure)
{
    return PyLong_FromUnsignedLongLong(self->l1_hits);
}

static PyObject *
RouteTable_retired(RouteTableObject *self, void *closure)
{
    return PyBool_FromLong(self->retired);
}

static PyObject *
RouteTable_retire(RouteTableObject *self, PyObject *unused)
{
    self->retired = 1;
    Py_RETURN_NONE;
}

static PyGetSetDef RouteTable_getset[] = {
    {"l1_hits", (getter)RouteTable_l1_hits, NULL, "GETs this table answered from L1", NULL},
    {"retired", (getter)RouteTable_retired, NULL, "whether retire() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef RouteTable_methods[] = {
    {"decide", (PyCFunction)RouteTable_decide, METH_VARARGS,
     "decide(key, klass=1) -> (owner, reason): reason 0 means the fast path queues it"},
    {"retire", (PyCFunction)RouteTable_retire, METH_NOARGS,
     "Mark the table replaced: a FastReader whose client is armed with it hands the next "
     "read to Python, which re-arms the client with the current table"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RouteTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cachefleet.sidecar._speedups.RouteTable",
    .tp_basicsize = sizeof(RouteTableObject),
    .tp_dealloc = (destructor)RouteTable_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RouteTable(ring, fast, stops, other=None, mode=0, shadow_basis_points=0): one "
              "routing snapshot, as route_table.py builds it",
    .tp_methods = RouteTable_methods,
    .tp_getset = RouteTable_getset,
    .tp_init = (initproc)RouteTable_init,
    .tp_new = PyType_GenericNew,
};

/* -- route_requests: the client hot path's per-request steps ------------------------------ */

static PyObject *str_state, *str_out, *str_waiters, *str_dirty, *str_send, *str_append,
    *str_client, *str_reply, *one;
static PyObject *str_fast, *str_closing, *str_slow_path, *str_route_failed, *zero;
static PyObject *str_popleft, *str_pending, *str_transport, *str_write, *str_parent,
    *str_part_done, *str_fd, *str_is_closing, *str_get_write_buffer_size;
static PyObject *str_rest, *str_received, *str_on_push, *str_deliver_in_python, *str_fail,
    *orphan_reason, *empty_bytes, *str_sent, *str_join, *str_run, *str_call_soon, *str_flush,
    *str_close;

/* -- the fields the loops touch, in C ------------------------------------------------------
 * ClientCore, BackendCore and SlotCore are the C bases of server.ClientConnection,
 * pool.BackendConnection and slots.Slot: the fields these loops read and write on every
 * request live in their structs (Python sees them as ordinary attributes), so the loops reach
 * them by offset instead of a look-up by name. Objects of other types (the tests' fakes) are
 * read and written through their attributes, with the same result. */

typedef struct {
    PyObject_HEAD
    PyObject *pending, *transport, *fd, *closing, *dirty, *fast;
} ClientCoreObject;

typedef struct {
    PyObject_HEAD
    PyObject *state, *out, *waiters, *dirty, *rest, *received, *on_push, *transport, *fd, *sent;
} BackendCoreObject;

typedef struct {
    PyObject_HEAD
    PyObject *client, *reply;
} SlotCoreObject;

static PyTypeObject ClientCoreType, BackendCoreType, SlotCoreType;

/* The C objects that stand in for a Python method of one connection (FastReader, ShardReader,
 * ShardWriter, set in its __dict__ so uvloop and the flusher call them without a Python frame)
 * hold object references only, after this header. */
#define BOUND_HEAD                                                                           \
    PyObject_HEAD                                                                            \
    vectorcallfunc vectorcall;

typedef struct {
    BOUND_HEAD
} BoundObject;

static PyTypeObject FastReaderType, ShardReaderType, ShardWriterType, ClientWriterType;

#define FIELDS_AFTER(header, size) ((Py_ssize_t)(((size) - sizeof(header)) / sizeof(PyObject *)))

static inline int has_core(PyObject *obj, PyTypeObject *core);

/* Where an object of these types keeps its references, and how many: every field of the cores
 * and of the bound objects is a PyObject *, so one traverse, clear and dealloc serve them all.
 * Slots first: one is made and freed per request, and has_core knows their class. */
static PyObject **
fields_of(PyObject *self, Py_ssize_t *count)
{
    PyTypeObject *t = Py_TYPE(self);
    if (has_core(self, &SlotCoreType))
        *count = FIELDS_AFTER(PyObject, sizeof(SlotCoreObject));
    else if (has_core(self, &ClientCoreType))
        *count = FIELDS_AFTER(PyObject, sizeof(ClientCoreObject));
    else if (has_core(self, &BackendCoreType))
        *count = FIELDS_AFTER(PyObject, sizeof(BackendCoreObject));
    else { /* a bound object: its type is not subclassed, so its size is its own */
        *count = FIELDS_AFTER(BoundObject, (size_t)t->tp_basicsize);
        return (PyObject **)((char *)self + sizeof(BoundObject));
    }
    return (PyObject **)((char *)self + sizeof(PyObject));
}

static int
Fields_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_ssize_t n;
    PyObject **fields = fields_of(self, &n);
    for (Py_ssize_t i = 0; i < n; i++)
        Py_VISIT(fields[i]);
    return 0;
}

static int
Fields_clear(PyObject *self)
{
    Py_ssize_t n;
    PyObject **fields = fields_of(self, &n);
    for (Py_ssize_t i = 0; i < n; i++)
        Py_CLEAR(fields[i]);
    return 0;
}

static void
Fields_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    Fields_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* type(*args) for a bound object: one reference per positional argument, in its struct's
 * order, and the function its calls run. */
static PyObject *
bound_new(PyTypeObject *type, PyObject *args, PyObject *kwds, vectorcallfunc call)
{
    Py_ssize_t n = FIELDS_AFTER(BoundObject, (size_t)type->tp_basicsize);
    if ((kwds != NULL && PyDict_GET_SIZE(kwds) != 0) || PyTuple_GET_SIZE(args) != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd positional arguments", type->tp_name, n);
        return NULL;
    }
    BoundObject *self = (BoundObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject **fields = (PyObject **)((char *)self + sizeof(BoundObject));
    for (Py_ssize_t i = 0; i < n; i++)
        fields[i] = Py_NewRef(PyTuple_GET_ITEM(args, i));
    self->vectorcall = call;
    return (PyObject *)self;
}

#define BOUND_TYPE(var, T, name, call, doc)                                                  \
    static PyObject *var##_new(PyTypeObject *type, PyObject *args, PyObject *kwds)           \
    {                                                                                        \
        return bound_new(type, args, kwds, (vectorcallfunc)(call));                          \
    }                                                                                        \
    static PyTypeObject var = {                                                              \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cachefleet.sidecar._speedups." name,      \
        .tp_basicsize = sizeof(T),                                                           \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,   \
        .tp_doc = doc,                                                                       \
        .tp_new = var##_new,                                                                 \
        .tp_vectorcall_offset = offsetof(BoundObject, vectorcall),                           \
        .tp_call = PyVectorcall_Call,                                                        \
        .tp_traverse = Fields_traverse,                                                      \
        .tp_clear = Fields_clear,                                                            \
        .tp_dealloc = Fields_dealloc,                                                        \
    };

#define MEMBER(T, name) {#name, T_OBJECT_EX, offsetof(T, name), 0, NULL}

static PyMemberDef ClientCore_members[] = {
    MEMBER(ClientCoreObject, pending), MEMBER(ClientCoreObject, transport),
    MEMBER(ClientCoreObject, fd),      MEMBER(ClientCoreObject, closing),
    MEMBER(ClientCoreObject, dirty),   MEMBER(ClientCoreObject, fast),
    {NULL, 0, 0, 0, NULL},
};

static PyMemberDef BackendCore_members[] = {
    MEMBER(BackendCoreObject, state),    MEMBER(BackendCoreObject, out),
    MEMBER(BackendCoreObject, waiters),  MEMBER(BackendCoreObject, dirty),
    MEMBER(BackendCoreObject, rest),     MEMBER(BackendCoreObject, received),
    MEMBER(BackendCoreObject, on_push),  MEMBER(BackendCoreObject, transport),
    MEMBER(BackendCoreObject, fd),       MEMBER(BackendCoreObject, sent),
    {NULL, 0, 0, 0, NULL},
};

static PyMemberDef SlotCore_members[] = {
    MEMBER(SlotCoreObject, client),
    MEMBER(SlotCoreObject, reply),
    {NULL, 0, 0, 0, NULL},
};

#define CORE_TYPE(var, T, name, members, doc)                                                \
    static PyTypeObject var = {                                                              \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cachefleet.sidecar._speedups." name,      \
        .tp_basicsize = sizeof(T),                                                           \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,          \
        .tp_doc = doc,                                                                       \
        .tp_new = PyType_GenericNew,                                                         \
        .tp_members = members,                                                               \
        .tp_traverse = Fields_traverse,                                                      \
        .tp_clear = Fields_clear,                                                            \
        .tp_dealloc = Fields_dealloc,                                                        \
    };

CORE_TYPE(ClientCoreType, ClientCoreObject, "ClientCore", ClientCore_members,
          "The C base of server.ClientConnection: the fields the C loops use.")
CORE_TYPE(BackendCoreType, BackendCoreObject, "BackendCore", BackendCore_members,
          "The C base of pool.BackendConnection: the fields the C loops use.")
CORE_TYPE(SlotCoreType, SlotCoreObject, "SlotCore", SlotCore_members,
          "The C base of slots.Slot: its client and reply.")

/* PyObject_TypeCheck(obj, core), remembering the last subclass seen per core (held, so its
 * address cannot be reused by another type): the connection classes are subclasses of the
 * cores, and walking their MRO on every field access showed in profiles. */
static PyTypeObject *last_subtype[3];

/* Inlined with get_field and set_field: they run several times per request. */
static inline __attribute__((always_inline)) int
has_core(PyObject *obj, PyTypeObject *core)
{
    PyTypeObject *type = Py_TYPE(obj);
    int which = core == &ClientCoreType ? 0 : core == &BackendCoreType ? 1 : 2;
    if (type == core || type == last_subtype[which])
        return 1;
    if (!PyType_IsSubtype(type, core))
        return 0;
    Py_INCREF(type);
    Py_XSETREF(last_subtype[which], type);
    return 1;
}

/* obj.<name>, by offset when obj has the C base `core`; a new reference, or NULL with
 * AttributeError when unset, as a look-up by name gives. */
static inline __attribute__((always_inline)) PyObject *
get_field(PyObject *obj, PyTypeObject *core, Py_ssize_t offset, PyObject *name)
{
    if (has_core(obj, core)) {
        PyObject *value = *(PyObject **)((char *)obj + offset);
        if (value != NULL)
            return Py_NewRef(value);
    }
    return PyObject_GetAttr(obj, name);
}

/* obj.<name> = value, by offset when obj has the C base `core`; 0 or -1. */
static inline __attribute__((always_inline)) int
set_field(PyObject *obj, PyTypeObject *core, Py_ssize_t offset, PyObject *name, PyObject *value)
{
    if (has_core(obj, core)) {
        Py_XSETREF(*(PyObject **)((char *)obj + offset), Py_NewRef(value));
        return 0;
    }
    return PyObject_SetAttr(obj, name, value);
}

/* deque.append and deque.popleft, looked up once: the loops call them on every request. */
static PyTypeObject *deque_type;
static PyObject *deque_append, *deque_popleft;

static PyObject *
append_to(PyObject *queue, PyObject *item)
{
    if (Py_IS_TYPE(queue, deque_type)) {
        PyObject *args[2] = {queue, item};
        return PyObject_Vectorcall(deque_append, args, 2, NULL);
    }
    return PyObject_CallMethodOneArg(queue, str_append, item);
}

static PyObject *
pop_left(PyObject *queue)
{
    if (Py_IS_TYPE(queue, deque_type))
        return PyObject_Vectorcall(deque_popleft, &queue, 1, NULL);
    return PyObject_CallMethodNoArgs(queue, str_popleft);
}

#define CLIENT_GET(obj, f)                                                                   \
    get_field(obj, &ClientCoreType, offsetof(ClientCoreObject, f), str_##f)
#define BACKEND_GET(obj, f)                                                                  \
    get_field(obj, &BackendCoreType, offsetof(BackendCoreObject, f), str_##f)
#define BACKEND_SET(obj, f, v)                                                               \
    set_field(obj, &BackendCoreType, offsetof(BackendCoreObject, f), str_##f, v)
#define SLOT_GET(obj, f) get_field(obj, &SlotCoreType, offsetof(SlotCoreObject, f), str_##f)
#define SLOT_SET(obj, f, v)                                                                  \
    set_field(obj, &SlotCoreType, offsetof(SlotCoreObject, f), str_##f, v)

/* counts[spec] += 1, as counts.get(spec, 0) + 1 */
static int
bump(PyObject *counts, PyObject *spec)
{
    PyObject *old = PyDict_GetItemWithError(counts, spec);
    PyObject *new;
    if (old == NULL) {
        if (PyErr_Occurred())
            return -1;
        new = PyLong_FromLong(1);
    }
    else {
        new = PyNumber_Add(old, one);
    }
    if (new == NULL)
        return -1;
    int r = PyDict_SetItem(counts, spec, new);
    Py_DECREF(new);
    return r;
}

/* Where obj.dirty lives when obj is a connection with a C base (NULL for other objects):
 * the flag the flusher sets and clears and the loops read, on shard and client connections. */
static PyObject **
dirty_field(PyObject *obj)
{
    if (has_core(obj, &BackendCoreType))
        return &((BackendCoreObject *)obj)->dirty;
    if (has_core(obj, &ClientCoreType))
        return &((ClientCoreObject *)obj)->dirty;
    return NULL;
}

/* add(obj) unless obj.dirty, as the Python loops register with the flusher; 0 or -1. */
static int
register_unless_dirty(PyObject *obj, PyObject *add)
{
    PyObject **field = dirty_field(obj);
    PyObject *dirty = field != NULL && *field != NULL ? Py_NewRef(*field)
                                                      : PyObject_GetAttr(obj, str_dirty);
    if (dirty == NULL)
        return -1;
    int is_dirty = PyObject_IsTrue(dirty);
    Py_DECREF(dirty);
    if (is_dirty <= 0) {
        if (is_dirty < 0)
            return -1;
        PyObject *r = PyObject_CallOneArg(add, obj);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* A Slot(client) without running its Python __init__: the two slots it sets, set here. */
static PyObject *
new_slot(PyTypeObject *slot_type, PyObject *client)
{
    PyObject *slot = slot_type->tp_alloc(slot_type, 0);
    if (slot == NULL)
        return NULL;
    if (SLOT_SET(slot, client, client) < 0 || SLOT_SET(slot, reply, Py_None) < 0) {
        Py_DECREF(slot);
        return NULL;
    }
    return slot;
}

/* The steps the Python loop in server.py takes for one fast request, 0 or -1 on error. */
static int
enqueue_one(PyObject *raw, PyObject *spec, PyObject *target, PyObject *client,
            PyObject *pending_append, PyTypeObject *slot_type, PyObject *add_backend,
            PyObject *ready)
{
    PyObject *conn = PyTuple_GET_ITEM(target, 0);
    PyObject *counts = PyTuple_GET_ITEM(target, 1);
    PyObject *slot = new_slot(slot_type, client);
    if (slot == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(pending_append, slot);
    if (r == NULL)
        goto fail;
    Py_DECREF(r);
    if (bump(counts, spec) < 0)
        goto fail;
    PyObject *state = BACKEND_GET(conn, state);
    if (state == NULL)
        goto fail;
    int is_ready = PyObject_RichCompareBool(state, ready, Py_EQ);
    Py_DECREF(state);
    if (is_ready < 0)
        goto fail;
    if (is_ready) { /* BackendConnection.send, inlined as in the Python loop */
        PyObject *out = BACKEND_GET(conn, out);
        if (out == NULL)
            goto fail;
        int e = PyList_Check(out) ? PyList_Append(out, raw) : -1;
        if (e < 0 && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "conn.out must be a list");
        Py_DECREF(out);
        if (e < 0)
            goto fail;
        PyObject *waiters = BACKEND_GET(conn, waiters);
        if (waiters == NULL)
            goto fail;
        r = append_to(waiters, slot);
        Py_DECREF(waiters);
        if (r == NULL)
            goto fail;
        Py_DECREF(r);
        if (register_unless_dirty(conn, add_backend) < 0)
            goto fail;
    }
    else {
        r = PyObject_CallMethodObjArgs(conn, str_send, raw, slot, NULL);
        if (r == NULL)
            goto fail;
        Py_DECREF(r);
    }
    Py_DECREF(slot);
    return 0;
fail:
    Py_DECREF(slot);
    return -1;
}

static long long
monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* A GET of a hot key answered from L1, as L1Route.serve does: 1 when served, 0 when the entry
 * is missing or expired (the route unit fetches it), -1 on error. */
static int
l1_serve(RouteTableObject *table, const char *key, Py_ssize_t len, PyObject *client,
         PyObject *pending_append, PyTypeObject *slot_type, PyObject *add_client)
{
    PyObject *name = PyBytes_FromStringAndSize(key, len);
    if (name == NULL)
        return -1;
    PyObject *entry = PyDict_GetItemWithError(table->l1, name); /* borrowed */
    Py_DECREF(name);
    if (entry == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
        !PyBytes_Check(PyTuple_GET_ITEM(entry, 0))) {
        PyErr_SetString(PyExc_TypeError, "l1 entries must be (reply, expires_ns, owner)");
        return -1;
    }
    long long expires = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 1));
    if (expires == -1 && PyErr_Occurred())
        return -1;
    if (monotonic_ns() >= expires)
        return 0;
    PyObject *reply = PyTuple_GET_ITEM(entry, 0);
    Py_INCREF(reply); /* the entry may go while Python code runs below */
    PyObject *slot = new_slot(slot_type, client);
    int e = slot == NULL ? -1 : SLOT_SET(slot, reply, reply);
    Py_DECREF(reply);
    if (e == 0) {
        PyObject *r = PyObject_CallOneArg(pending_append, slot);
        e = r == NULL ? -1 : 0;
        Py_XDECREF(r);
    }
    if (e == 0)
        e = register_unless_dirty(client, add_client);
    Py_XDECREF(slot);
    if (e < 0)
        return -1;
    table->l1_hits++;
    return 1;
}

PyDoc_STRVAR(route_requests_doc,
"route_requests(buf, pos, table, targets, client, pending_append, slot_type, add_backend,\n"
"               add_client, ready, max_bytes) -> (pos, stop, end, owner, reason)\n\n"
"From pos, queue every complete well-formed request whose name is in table's fast commands\n"
"(name -> (spec, arity, class)) with a key, a matching argument count, at most max_bytes, and a\n"
"route decision of 0, as the Python loop does: a new slot_type(client) appended with\n"
"pending_append, targets[owner][1][spec] bumped, and the raw bytes and slot given to the\n"
"connection targets[owner][0] (appended to its out and waiters when its state == ready,\n"
"add_backend(conn) when it is not dirty; conn.send(raw, slot) otherwise). targets None takes\n"
"nothing (a client that has not authenticated). Stops at the first request it does not queue:\n"
"pos is where it starts; stop is 0 (the end of buf, or an incomplete request), 1 (a complete\n"
"request at buf[pos:end] for the dispatcher), 2 (bytes it does not claim: hiredis from pos) or\n"
"3 (a fast request at buf[pos:end] whose route decision is reason for owner). With a hot-key\n"
"tracker every fast request's key is counted; a GET of a hot key found in L1 is answered from\n"
"it (a filled slot_type(client), add_client(client) when not dirty).");

/* Where route_requests stopped and why (see route_requests_doc). */
typedef struct {
    Py_ssize_t pos, end;
    int stop, reason;
    long owner;
} Routed;

/* route_requests without its result tuple: 0 with *out set, or -1 with an exception. */
/* table.fast[name], borrowed; NULL when absent (an exception set only on error). The last
 * command found is remembered: no bytes object for a name equal to the previous one. */
static PyObject *
fast_entry(RouteTableObject *table, const char *name_at, Py_ssize_t len)
{
    PyObject *last = table->last_name;
    if (last != NULL && PyBytes_GET_SIZE(last) == len &&
        memcmp(PyBytes_AS_STRING(last), name_at, (size_t)len) == 0)
        return table->last_entry;
    PyObject *name = PyBytes_FromStringAndSize(name_at, len);
    if (name == NULL)
        return NULL;
    PyObject *entry = PyDict_GetItemWithError(table->fast, name);
    if (entry == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    Py_XSETREF(table->last_name, name);
    Py_INCREF(entry);
    Py_XSETREF(table->last_entry, entry);
    return entry;
}

/* A key under cachefleet's own prefix (OWN_KEY_PREFIX in config/keys.py): heartbeats, the
 * gutter's journal and warm-up tombstones live there, so an app may not name one. */
#define OWN_KEY_PREFIX "cachefleet:"

static inline int
own_key(const char *key, Py_ssize_t len)
{
    const Py_ssize_t n = (Py_ssize_t)sizeof(OWN_KEY_PREFIX) - 1;
    return len >= n && key[0] == 'c' && memcmp(key, OWN_KEY_PREFIX, (size_t)n) == 0;
}

static int
route_core(PyObject *const *args, Py_ssize_t nargs, Routed *out)
{
    const char *p;
    Py_ssize_t size, pos, max_bytes, end = 0;
    long owner = -1;
    int stop = STOP_END, reason = 0;
    if (nargs != 11 || !PyObject_TypeCheck(args[2], &RouteTableType) ||
        (args[3] != Py_None && !PyList_Check(args[3])) || !PyType_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "route_requests(buf, pos, table, targets, client, pending_append, "
                        "slot_type, add_backend, add_client, ready, max_bytes)");
        return -1;
    }
    RouteTableObject *table = (RouteTableObject *)args[2];
    PyObject *targets = args[3], *client = args[4];
    PyObject *pending_append = args[5], *add_backend = args[7], *add_client = args[8];
    PyObject *ready = args[9];
    PyTypeObject *slot_type = (PyTypeObject *)args[6];
    if (table->ring == NULL) {
        PyErr_SetString(PyExc_ValueError, "RouteTable not initialised");
        return -1;
    }
    if (scan_arguments(table->ring, args[0], args[1], &p, &size, &pos) < 0)
        return -1;
    max_bytes = PyLong_AsSsize_t(args[10]);
    if (max_bytes == -1 && PyErr_Occurred())
        return -1;
    int64_t hot_now = -1; /* the hot-key tracker's clock, read at the first request it counts */
    while (pos < size) {
        Request q = {0, 0, 0, 0, -1, 0};
        int r = scan_one(p, pos, size, &q);
        if (r == 0)
            break;
        if (r < 0) {
            stop = STOP_UNCLAIMED;
            break;
        }
        end = q.end;
        stop = STOP_DISPATCH;
        if (targets == Py_None || q.key_len < 0 || q.end - pos > max_bytes)
            break;
        PyObject *entry = fast_entry(table, p + q.name_at, q.name_len); /* borrowed */
        if (entry == NULL) {
            if (PyErr_Occurred())
                return -1;
            break;
        }
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3) {
            PyErr_SetString(PyExc_TypeError, "fast values must be (spec, arity, class)");
            return -1;
        }
        long arity = PyLong_AsLong(PyTuple_GET_ITEM(entry, 1));
        long klass = PyLong_AsLong(PyTuple_GET_ITEM(entry, 2));
        if ((arity == -1 || klass == -1) && PyErr_Occurred())
            return -1;
        if (arity > 0 ? q.argc != arity : q.argc < -arity)
            break;
        const char *key = p + q.key_at;
        if (own_key(key, q.key_len))
            break; /* the dispatcher refuses it, with a message */
        int whole;
        uint32_t position = key_position(key, q.key_len, &whole), hash = 0;
        if (table->tracker != NULL) {
            /* The sketch is larger than the caches: fetch its cells during the ring look-up. */
            hash = whole ? position : murmur3_32((const unsigned char *)key, q.key_len, 0);
            cf_hotkeys_prefetch(table->tracker, hash);
        }
        reason = route_decide(table, key, q.key_len, position, (int)klass, &owner);
        if (table->tracker != NULL) {
            /* One clock read for the requests of this read: they arrived together. */
            if (hot_now < 0 && cf_hotkeys_now(table->tracker, &hot_now) < 0)
                return -1;
            int hot = cf_hotkeys_observe_at(table->tracker, hot_now, hash, key, q.key_len);
            if (hot < 0)
                return -1;
            if (hot && !reason && table->l1 != NULL && table->l1_ok[owner] &&
                klass != CLASS_READ) {
                int served = klass == CLASS_VALUE_READ
                                 ? l1_serve(table, key, q.key_len, client, args[5], slot_type,
                                            add_client)
                                 : 0;
                if (served < 0)
                    return -1;
                if (served) {
                    stop = STOP_END;
                    pos = q.end;
                    if (get_buffer(args[0], &p, &size) < 0)
                        return -1;
                    continue;
                }
                reason = REASON_L1;
            }
        }
        if (reason) {
            stop = STOP_ROUTE;
            break;
        }
        if (owner >= PyList_GET_SIZE(targets))
            break; /* targets built for another table: let Python sort it out */
        PyObject *target = PyList_GET_ITEM(targets, owner);
        if (!PyTuple_Check(target) || PyTuple_GET_SIZE(target) != 2 ||
            !PyDict_Check(PyTuple_GET_ITEM(target, 1))) {
            PyErr_SetString(PyExc_TypeError, "targets must hold (conn, counts dict) tuples");
            return -1;
        }
        /* Borrowed references may not outlive a call into Python code: hold them. */
        PyObject *spec = PyTuple_GET_ITEM(entry, 0);
        Py_INCREF(spec);
        Py_INCREF(target);
        PyObject *raw = slice(args[0], p, size, pos, q.end);
        int e = raw == NULL ? -1
                            : enqueue_one(raw, spec, target, client, pending_append, slot_type,
                                          add_backend, ready);
        Py_XDECREF(raw);
        Py_DECREF(target);
        Py_DECREF(spec);
        if (e < 0)
            return -1;
        stop = STOP_END;
        owner = -1;
        pos = q.end;
        /* Python code ran (a non-ready conn.send may fill a slot): the buffer may not move
         * under us, but a bytearray could have been resized; read its pointer again. */
        if (get_buffer(args[0], &p, &size) < 0)
            return -1;
        if (pos > size)
            break;
    }
    if (stop == STOP_END || stop == STOP_UNCLAIMED) {
        end = pos;
        owner = -1;
        reason = 0;
    }
    out->pos = pos;
    out->stop = stop;
    out->end = end;
    out->owner = owner;
    out->reason = reason;
    return 0;
}

/* A client connection's data_received in C: uvloop calls it for every read, so the common case
 * (the connection armed for the fast path, its route table current, every request queued) runs
 * without a Python frame or argument and result tuples. Anything else goes to
 * client._data_received(data, pos), the path without the extension. */
typedef struct {
    BOUND_HEAD
    PyObject *client;
} FastReaderObject;

static PyObject *
FastReader_vectorcall(FastReaderObject *self, PyObject *const *args, size_t nargsf,
                      PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "data_received(data)");
        return NULL;
    }
    PyObject *data = args[0], *client = self->client;
    PyObject *fast = CLIENT_GET(client, fast);
    if (fast == NULL)
        return NULL;
    int armed = 0;
    /* The armed tuple holds while its table is the current one: the app retires a table when
     * it replaces it (no look-up of app.routes by name on every read). */
    if (PyTuple_CheckExact(fast) && PyTuple_GET_SIZE(fast) == 9 &&
        PyObject_TypeCheck(PyTuple_GET_ITEM(fast, 0), &RouteTableType) &&
        !((RouteTableObject *)PyTuple_GET_ITEM(fast, 0))->retired) {
        PyObject *closing = CLIENT_GET(client, closing);
        int is_closing = closing == NULL ? -1 : PyObject_IsTrue(closing);
        Py_XDECREF(closing);
        if (is_closing < 0) {
            Py_DECREF(fast);
            return NULL;
        }
        armed = !is_closing;
    }
    Py_ssize_t start = 0;
    if (armed) {
        PyObject *call[11];
        call[0] = data;
        call[1] = zero;
        for (Py_ssize_t i = 0; i < 9; i++)
            call[i + 2] = PyTuple_GET_ITEM(fast, i);
        Routed r;
        int e = route_core(call, 11, &r);
        Py_DECREF(fast);
        if (e < 0) {
            /* A bug must cost this connection only: the client logs it and closes. */
            PyObject *type, *exc, *tb;
            PyErr_Fetch(&type, &exc, &tb);
            PyErr_NormalizeException(&type, &exc, &tb);
            if (tb != NULL && exc != NULL)
                PyException_SetTraceback(exc, tb);
            PyObject *res = PyObject_CallMethodOneArg(client, str_route_failed,
                                                      exc != NULL ? exc : Py_None);
            Py_XDECREF(type);
            Py_XDECREF(exc);
            Py_XDECREF(tb);
            return res;
        }
        if (r.stop == STOP_END && PyBytes_Check(data) && r.pos == PyBytes_GET_SIZE(data))
            Py_RETURN_NONE;
        start = r.pos;
    }
    else {
        Py_DECREF(fast);
    }
    PyObject *pos = PyLong_FromSsize_t(start);
    if (pos == NULL)
        return NULL;
    PyObject *res = PyObject_CallMethodObjArgs(client, str_slow_path, data, pos, NULL);
    Py_DECREF(pos);
    return res;
}

BOUND_TYPE(FastReaderType, FastReaderObject, "FastReader", FastReader_vectorcall,
           "FastReader(client): client.data_received's common case in C. Called with "
           "data, it runs route_requests on the client's armed fast tuple (client.fast, valid "
           "while its table, fast[0], is not retired and the client is not closing) and calls "
           "client._data_received(data, pos) for whatever it does not finish, "
           "client._route_failed(exc) on an unexpected error.")

static PyObject *
route_requests(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Routed r;
    if (route_core(args, nargs, &r) < 0)
        return NULL;
    return Py_BuildValue("(ninli)", r.pos, r.stop, r.end, r.owner, r.reason);
}

/* A plain decimal length "-?[0-9]{1,15}" between p[i] and the CRLF at eol.
 * Returns 0 and sets *value, or -1 when it is anything else (the caller falls back). */
static int
plain_number(const char *p, Py_ssize_t i, Py_ssize_t eol, long long *value)
{
    int negative = 0;
    long long v = 0;
    if (i < eol && p[i] == '-') {
        negative = 1;
        i++;
    }
    if (i >= eol || eol - i > MAX_DIGITS)
        return -1;
    for (; i < eol; i++) {
        char c = p[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *value = negative ? -v : v;
    return 0;
}

static Py_ssize_t
find_crlf(const char *p, Py_ssize_t from, Py_ssize_t size)
{
    while (from + 1 < size) {
        const char *cr = memchr(p + from, '\r', (size_t)(size - 1 - from));
        if (cr == NULL)
            return -1;
        Py_ssize_t at = cr - p;
        if (p[at + 1] == '\n')
            return at;
        from = at + 1;
    }
    return -1;
}

#define INCOMPLETE (-1)
#define FALLBACK (-2)

/* End of the complete reply at pos (resp.reply_end's walk), INCOMPLETE or FALLBACK. */
static Py_ssize_t
reply_end(const char *p, Py_ssize_t pos, Py_ssize_t size)
{
    long long remaining = 1;
    while (remaining) {
        if (pos >= size)
            return INCOMPLETE;
        char kind = p[pos];
        Py_ssize_t eol = find_crlf(p, pos, size);
        long long n;
        if (eol < 0)
            return INCOMPLETE;
        remaining--;
        switch (kind) {
        case '$': case '=': case '!':
            if (plain_number(p, pos + 1, eol, &n) < 0)
                return FALLBACK;
            if (n < 0) {
                pos = eol + 2;
            }
            else {
                if (n + 2 > (long long)(size - eol - 2))
                    return INCOMPLETE;
                pos = eol + (Py_ssize_t)n + 4;
            }
            break;
        case '*': case '~': case '>':
            if (plain_number(p, pos + 1, eol, &n) < 0)
                return FALLBACK;
            if (n > 0)
                remaining += n;
            pos = eol + 2;
            break;
        case '%':
            if (plain_number(p, pos + 1, eol, &n) < 0)
                return FALLBACK;
            remaining += 2 * n;
            pos = eol + 2;
            break;
        case '|':
            if (plain_number(p, pos + 1, eol, &n) < 0)
                return FALLBACK;
            remaining += 2 * n + 1;
            pos = eol + 2;
            break;
        default:
            pos = eol + 2;
        }
        /* Python's arbitrary ints never wrap; these bounds keep ours from wrapping too. A
         * count this far from zero cannot be settled by any buffer: it stays incomplete. */
        if (remaining > (1LL << 52) || remaining < -(1LL << 52))
            return FALLBACK;
    }
    return pos;
}

/* -- deliver_replies: the shard connection's per-reply steps ------------------------------ */

/* transport.write(data), with the system call made here when it can be: uvloop's write costs
 * about a microsecond of Python-level work per call, more than the rest of a reply's delivery.
 * fd is the transport's socket (-1: always transport.write). The bytes go straight to the socket
 * only while the transport is open (so fd is still its socket, not a reused number) and holds
 * nothing unsent (so they cannot overtake earlier bytes); whatever the socket does not take at
 * once, or an error, goes to transport.write, which buffers the rest or fails the transport as
 * it always does. 0 or -1 with an exception. */
/* The transport's methods write_now calls, looked up once per transport type (uvloop's) rather
 * than by name on every write; only for types without an instance dict, where nothing can
 * shadow them. */
static PyTypeObject *transport_type;
static PyObject *transport_methods[3]; /* is_closing, get_write_buffer_size, write */
enum { IS_CLOSING, GET_WRITE_BUFFER_SIZE, WRITE };

static PyObject *
call_transport(PyObject *transport, int which, PyObject *arg)
{
    PyTypeObject *type = Py_TYPE(transport);
    if (type != transport_type && type->tp_dictoffset == 0) {
        PyObject *found[3] = {
            PyObject_GetAttr((PyObject *)type, str_is_closing),
            PyObject_GetAttr((PyObject *)type, str_get_write_buffer_size),
            PyObject_GetAttr((PyObject *)type, str_write),
        };
        if (found[0] == NULL || found[1] == NULL || found[2] == NULL) {
            for (int i = 0; i < 3; i++)
                Py_XDECREF(found[i]);
            PyErr_Clear(); /* not a transport we know: by name below, as always */
        }
        else {
            Py_INCREF(type);
            Py_XSETREF(transport_type, type);
            for (int i = 0; i < 3; i++)
                Py_XSETREF(transport_methods[i], found[i]);
        }
    }
    PyObject *args[2] = {transport, arg};
    if (type == transport_type)
        return PyObject_Vectorcall(transport_methods[which], args, arg == NULL ? 1 : 2, NULL);
    static PyObject **names[3] = {&str_is_closing, &str_get_write_buffer_size, &str_write};
    return PyObject_VectorcallMethod(*names[which], args, arg == NULL ? 1 : 2, NULL);
}

/* transport.write of the bytes p[0:size], with the system call made here when the transport
 * is open and holds nothing unsent (see write_now_doc). whole is a bytes object holding exactly
 * those bytes, or NULL when they are part of a larger buffer: a bytes object is then made only
 * for what uvloop must take (the reply of a read that holds several is sent without one). */
static int
write_span(PyObject *transport, long fd, PyObject *whole, const char *p, Py_ssize_t size)
{
    PyObject *r;
    if (fd >= 0) {
        r = call_transport(transport, IS_CLOSING, NULL);
        if (r == NULL)
            return -1;
        int closing = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (closing < 0)
            return -1;
        Py_ssize_t buffered = 1;
        if (!closing) {
            r = call_transport(transport, GET_WRITE_BUFFER_SIZE, NULL);
            if (r == NULL)
                return -1;
            buffered = PyLong_AsSsize_t(r);
            Py_DECREF(r);
            if (buffered == -1 && PyErr_Occurred())
                return -1;
        }
        if (buffered == 0) {
            ssize_t sent;
            do
                sent = send((int)fd, p, (size_t)size, MSG_DONTWAIT | MSG_NOSIGNAL);
            while (sent < 0 && errno == EINTR);
            if (sent == size)
                return 0;
            if (sent > 0) {
                p += sent;
                size -= sent;
                whole = NULL;
            }
            /* Nothing sent: EAGAIN, or an error uvloop will meet and report itself. */
        }
    }
    PyObject *data = whole != NULL ? Py_NewRef(whole) : PyBytes_FromStringAndSize(p, size);
    if (data == NULL)
        return -1;
    r = call_transport(transport, WRITE, data);
    Py_DECREF(data);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int
write_now(PyObject *transport, long fd, PyObject *data)
{
    if (PyBytes_CheckExact(data))
        return write_span(transport, fd, data, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
    PyObject *r = call_transport(transport, WRITE, data);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* The socket number in a connection's fd field: fd is the field's value as read (a new
 * reference, released here; NULL when reading it failed); -1 with an exception on error. */
static int
fd_number(PyObject *fd, long *number)
{
    if (fd == NULL)
        return -1;
    *number = PyLong_AsLong(fd);
    Py_DECREF(fd);
    return *number == -1 && PyErr_Occurred() ? -1 : 0;
}

/* write_now on the socket in a connection's fd field (see fd_number). */
static int
write_now_on(PyObject *transport, PyObject *fd, PyObject *data)
{
    long number;
    return fd_number(fd, &number) < 0 ? -1 : write_now(transport, number, data);
}

/* The bytes a turn's queued pieces leave as, in one write: the piece itself when alone, else
 * b"".join(pieces), copied here when every piece is bytes (no method call, no list walk in
 * Python: it showed in profiles at a write per three requests). */
static PyObject *
joined(PyObject *pieces)
{
    Py_ssize_t n = PyList_GET_SIZE(pieces), total = 0;
    if (n == 1)
        return Py_NewRef(PyList_GET_ITEM(pieces, 0));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(pieces, i);
        if (!PyBytes_CheckExact(piece) || total > PY_SSIZE_T_MAX - PyBytes_GET_SIZE(piece))
            return PyObject_CallMethodOneArg(empty_bytes, str_join, pieces);
        total += PyBytes_GET_SIZE(piece);
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, total);
    if (data == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(data);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *piece = PyList_GET_ITEM(pieces, i);
        memcpy(at, PyBytes_AS_STRING(piece), (size_t)PyBytes_GET_SIZE(piece));
        at += PyBytes_GET_SIZE(piece);
    }
    return data;
}

/* The argument check of a flush(): 1 when there are none, else 0 with TypeError. */
static int
no_arguments(size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 0 && kwnames == NULL)
        return 1;
    PyErr_SetString(PyExc_TypeError, "flush() takes no arguments");
    return 0;
}

/* BackendConnection.data_received's steps for one reply, buf[pos:end] (buf is bytes), and its
 * slot; 0 or -1 on error. The reply's own bytes object is made only where one is kept or
 * handed on: a reply written to its client at once is sent from buf. */
static int
deliver_one(PyObject *slot, PyObject *buf, Py_ssize_t pos, Py_ssize_t end, PyObject *add_client)
{
    PyObject *r, *raw;
    const char *p = PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    PyObject *client = SLOT_GET(slot, client);
    if (client == NULL)
        return -1;
    if (client == Py_None) {
        Py_DECREF(client);
        PyObject *parent = PyObject_GetAttr(slot, str_parent);
        if (parent == NULL)
            return -1;
        if (parent != Py_None) {
            raw = slice(buf, p, size, pos, end);
            r = raw == NULL ? NULL
                            : PyObject_CallMethodObjArgs(parent, str_part_done, slot, raw, NULL);
            Py_XDECREF(raw);
            Py_DECREF(parent);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
        }
        else {
            Py_DECREF(parent);
        }
        return 0;
    }
    int only = 0;
    PyObject *pending = CLIENT_GET(client, pending);
    if (pending == NULL)
        goto fail;
    Py_ssize_t n = PyObject_Length(pending);
    if (n < 0)
        goto fail_pending;
    if (n == 1) {
        PyObject *first = PySequence_GetItem(pending, 0);
        if (first == NULL)
            goto fail_pending;
        Py_DECREF(first); /* only its identity is compared */
        if (first == slot) {
            PyObject *closing = CLIENT_GET(client, closing);
            if (closing == NULL)
                goto fail_pending;
            int is_closing = PyObject_IsTrue(closing);
            Py_DECREF(closing);
            if (is_closing < 0)
                goto fail_pending;
            only = !is_closing;
        }
    }
    if (only) { /* the client's only request: nothing to gather or order, answer now */
        r = pop_left(pending);
        if (r == NULL)
            goto fail_pending;
        Py_DECREF(r);
        Py_DECREF(pending);
        PyObject *transport = CLIENT_GET(client, transport);
        if (transport == NULL)
            goto fail;
        long fd;
        if (transport != Py_None &&
            (fd_number(CLIENT_GET(client, fd), &fd) < 0 ||
             write_span(transport, fd, pos == 0 && end == size ? buf : NULL, p + pos,
                        end - pos) < 0)) {
            Py_DECREF(transport);
            goto fail;
        }
        Py_DECREF(transport);
    }
    else {
        Py_DECREF(pending);
        raw = slice(buf, p, size, pos, end);
        int e = raw == NULL ? -1 : SLOT_SET(slot, reply, raw);
        Py_XDECREF(raw);
        if (e < 0)
            goto fail;
        if (register_unless_dirty(client, add_client) < 0)
            goto fail;
    }
    Py_DECREF(client);
    return 0;
fail_pending:
    Py_DECREF(pending);
fail:
    Py_DECREF(client);
    return -1;
}

PyDoc_STRVAR(write_now_doc,
"write_now(transport, fd, data) -> None\n\n"
"transport.write(data), with the system call made here when the transport is open and holds\n"
"nothing unsent: the bytes go straight to fd, its socket (-1: never); what the socket does not\n"
"take at once, or an error, goes to transport.write as before.");

static PyObject *
write_now_py(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "write_now(transport, fd, data)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[1]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (write_now(args[0], fd, args[2]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(deliver_replies_doc,
"deliver_replies(buf, waiters, add_client, push=None) -> (count, pos, orphan) or None\n\n"
"BackendConnection.data_received's loop in one call: cuts the complete replies at the start\n"
"of buf (as split_replies) and gives each to the slot popped from the waiters deque, as the\n"
"Python loop does (written to the client's transport when the slot is its client's only\n"
"pending request and the client is not closing, else stored in slot.reply and the client\n"
"registered with add_client when not dirty; a slot without a client goes to\n"
"slot.parent.part_done). count is how many replies were delivered, pos where the rest starts,\n"
"orphan True when a reply arrived with no waiter left (delivery stopped there). None, with\n"
"nothing delivered, when a length field is not plain decimal (use the Python loop). A RESP3\n"
"push frame ('>', for example an invalidation of CLIENT TRACKING) is not a reply: it goes to\n"
"push(raw) (dropped when push is None) and never takes a waiter.");

/* deliver_replies without its argument checks and result tuple: 1 with *count, *pos and
 * *orphan set, 0 when the Python loop must take buf (nothing delivered), -1 on error. */
static int
deliver_core(PyObject *buf, PyObject *waiters, PyObject *add_client, PyObject *push,
             Py_ssize_t *count_out, Py_ssize_t *pos_out, int *orphan_out)
{
    const char *p = PyBytes_AS_STRING(buf);
    Py_ssize_t size = PyBytes_GET_SIZE(buf), pos = 0, count = 0;
    /* First the whole walk, so a fallback happens before anything is delivered. */
    while (pos < size) {
        Py_ssize_t end = reply_end(p, pos, size);
        if (end == INCOMPLETE)
            break;
        if (end == FALLBACK)
            return 0;
        pos = end;
    }
    Py_ssize_t stop = pos;
    int orphan = 0;
    pos = 0;
    while (pos < stop) {
        Py_ssize_t end = reply_end(p, pos, size); /* bytes are immutable: same as above */
        if (p[pos] == '>') { /* a push frame: set aside, never matched to a waiter */
            if (push != NULL) {
                PyObject *raw = slice(buf, p, size, pos, end);
                PyObject *r = raw == NULL ? NULL : PyObject_CallOneArg(push, raw);
                Py_XDECREF(raw);
                if (r == NULL)
                    return -1;
                Py_DECREF(r);
            }
            pos = end;
            continue;
        }
        Py_ssize_t left = PyObject_Length(waiters);
        if (left < 0)
            return -1;
        if (left == 0) {
            orphan = 1;
            break;
        }
        PyObject *slot = pop_left(waiters);
        if (slot == NULL)
            return -1;
        int e = deliver_one(slot, buf, pos, end, add_client);
        Py_DECREF(slot);
        if (e < 0)
            return -1;
        count++;
        pos = end;
    }
    *count_out = count;
    *pos_out = pos;
    *orphan_out = orphan;
    return 1;
}

static PyObject *
deliver_replies(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 4 || !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "deliver_replies(buf: bytes, waiters, add_client, push=None)");
        return NULL;
    }
    PyObject *push = nargs == 4 && args[3] != Py_None ? args[3] : NULL;
    Py_ssize_t count, pos;
    int orphan;
    int done = deliver_core(args[0], args[1], args[2], push, &count, &pos, &orphan);
    if (done < 0)
        return NULL;
    if (done == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(nnO)", count, pos, orphan ? Py_True : Py_False);
}

/* A shard connection's data_received in C (BackendConnection.data_received is the reference):
 * the kept incomplete rest joined in front, deliver_core, then the accounting of _received
 * (the new rest, the replies counted, each write whose replies are all in timed with
 * latency.observe), without a Python frame. A buffer deliver_core leaves to Python goes to
 * conn._deliver_in_python(buf); a reply nobody asked for to conn.fail(why). */
typedef struct {
    BOUND_HEAD
    PyObject *conn;
    PyObject *add_client; /* conn.flusher.add_client */
    PyObject *observe;    /* conn.latency.observe: a C Latency's is called without a float */
    PyObject *clock;      /* None: time.monotonic's clock, read in C; else a callable (tests) */
    PyObject *marks;      /* conn.marks: (requests sent up to it, time, bytes, count) per write */
} ShardReaderObject;

/* The marks' clock: time.monotonic() read in C, or clock() when one was given; -1 on error. */
static int
read_marks_clock(PyObject *clock, double *now)
{
    if (clock == Py_None) {
        *now = cf_monotonic_seconds();
        return 0;
    }
    PyObject *r = PyObject_CallNoArgs(clock);
    if (r == NULL)
        return -1;
    *now = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return *now == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* _received's steps: keep buf[pos:], count the replies, time each write fully answered. */
static int
shard_received(ShardReaderObject *self, PyObject *buf, Py_ssize_t pos, Py_ssize_t count)
{
    PyObject *conn = self->conn;
    Py_ssize_t size = PyBytes_GET_SIZE(buf);
    if (pos < size) {
        PyObject *rest = PyBytes_FromStringAndSize(PyBytes_AS_STRING(buf) + pos, size - pos);
        int e = rest == NULL ? -1 : BACKEND_SET(conn, rest, rest);
        Py_XDECREF(rest);
        if (e < 0)
            return -1;
    }
    if (count == 0)
        return 0;
    PyObject *old = BACKEND_GET(conn, received);
    if (old == NULL)
        return -1;
    Py_ssize_t received = PyLong_AsSsize_t(old);
    Py_DECREF(old);
    if (received == -1 && PyErr_Occurred())
        return -1;
    received += count;
    PyObject *value = PyLong_FromSsize_t(received);
    int e = value == NULL ? -1 : BACKEND_SET(conn, received, value);
    Py_XDECREF(value);
    if (e < 0)
        return -1;
    PyObject *latency = cf_latency_of_observe(self->observe);
    double now = 0.0;
    int have_now = 0;
    for (;;) {
        Py_ssize_t n = PyObject_Length(self->marks);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        PyObject *mark = PySequence_GetItem(self->marks, 0);
        if (mark == NULL)
            return -1;
        if (!PyTuple_Check(mark) || PyTuple_GET_SIZE(mark) < 2) {
            Py_DECREF(mark);
            PyErr_SetString(PyExc_TypeError, "marks must hold (sent, time, ...) tuples");
            return -1;
        }
        Py_ssize_t upto = PyLong_AsSsize_t(PyTuple_GET_ITEM(mark, 0));
        double written = upto == -1 && PyErr_Occurred()
                             ? -1.0
                             : PyFloat_AsDouble(PyTuple_GET_ITEM(mark, 1));
        Py_DECREF(mark);
        if (written == -1.0 && PyErr_Occurred())
            return -1;
        if (upto > received)
            break;
        if (!have_now && read_marks_clock(self->clock, &now) < 0)
            return -1;
        have_now = 1;
        PyObject *r = pop_left(self->marks);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        if (latency != NULL) {
            cf_latency_observe(latency, now - written);
            continue;
        }
        PyObject *seconds = PyFloat_FromDouble(now - written);
        r = seconds == NULL ? NULL : PyObject_CallOneArg(self->observe, seconds);
        Py_XDECREF(seconds);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static PyObject *
ShardReader_vectorcall(ShardReaderObject *self, PyObject *const *args, size_t nargsf,
                       PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "data_received(data)");
        return NULL;
    }
    PyObject *conn = self->conn, *data = args[0];
    PyObject *rest = BACKEND_GET(conn, rest);
    if (rest == NULL)
        return NULL;
    PyObject *buf;
    if (PyBytes_Check(rest) && PyBytes_GET_SIZE(rest) > 0) {
        buf = PySequence_Concat(rest, data);
        Py_DECREF(rest);
        if (buf == NULL || BACKEND_SET(conn, rest, empty_bytes) < 0) {
            Py_XDECREF(buf);
            return NULL;
        }
    }
    else {
        Py_DECREF(rest);
        Py_INCREF(data);
        buf = data;
    }
    PyObject *result = NULL;
    if (!PyBytes_CheckExact(buf)) {
        result = PyObject_CallMethodOneArg(conn, str_deliver_in_python, buf);
        Py_DECREF(buf);
        return result;
    }
    PyObject *waiters = BACKEND_GET(conn, waiters);
    PyObject *push = waiters == NULL ? NULL : BACKEND_GET(conn, on_push);
    if (push == NULL) {
        Py_XDECREF(waiters);
        Py_DECREF(buf);
        return NULL;
    }
    Py_ssize_t count = 0, pos = 0;
    int orphan = 0;
    int done = deliver_core(buf, waiters, self->add_client, push == Py_None ? NULL : push,
                            &count, &pos, &orphan);
    Py_DECREF(waiters);
    Py_DECREF(push);
    if (done == 0)
        result = PyObject_CallMethodOneArg(conn, str_deliver_in_python, buf);
    else if (done > 0 && orphan)
        result = PyObject_CallMethodOneArg(conn, str_fail, orphan_reason);
    else if (done > 0 && shard_received(self, buf, pos, count) == 0) {
        Py_INCREF(Py_None);
        result = Py_None;
    }
    Py_DECREF(buf);
    return result;
}

BOUND_TYPE(ShardReaderType, ShardReaderObject, "ShardReader", ShardReader_vectorcall,
           "ShardReader(conn, add_client, observe, clock, marks): "
           "BackendConnection.data_received in C (see pool.py).")

/* A shard connection's flush in C (BackendConnection.flush is the reference): what the
 * requests of this loop turn queued in conn.out leaves in one write, and the write is marked
 * (requests sent up to it, time, bytes, count) for the reply timing and the timeouts. */
typedef struct {
    BOUND_HEAD
    PyObject *conn;
    PyObject *clock; /* None: time.monotonic's clock, read in C; else a callable (tests) */
    PyObject *marks; /* conn.marks */
} ShardWriterObject;

static int
shard_flush(ShardWriterObject *self)
{
    PyObject *conn = self->conn;
    PyObject *out = BACKEND_GET(conn, out);
    if (out == NULL)
        return -1;
    if (!PyList_Check(out)) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_TypeError, "conn.out must be a list");
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(out);
    PyObject *transport = n == 0 ? NULL : BACKEND_GET(conn, transport);
    if (transport == NULL || transport == Py_None) {
        Py_XDECREF(transport);
        Py_DECREF(out);
        return n == 0 || !PyErr_Occurred() ? 0 : -1;
    }
    PyObject *data = NULL, *fresh = PyList_New(0), *sent = NULL, *now = NULL;
    int result = -1;
    if (fresh == NULL || BACKEND_SET(conn, out, fresh) < 0 || (data = joined(out)) == NULL ||
        write_now_on(transport, BACKEND_GET(conn, fd), data) < 0)
        goto done;
    PyObject *before = BACKEND_GET(conn, sent);
    if (before == NULL)
        goto done;
    Py_ssize_t total = PyLong_AsSsize_t(before);
    Py_DECREF(before);
    if (total == -1 && PyErr_Occurred())
        goto done;
    total += n;
    if ((sent = PyLong_FromSsize_t(total)) == NULL || BACKEND_SET(conn, sent, sent) < 0)
        goto done;
    double written;
    if (read_marks_clock(self->clock, &written) < 0 || (now = PyFloat_FromDouble(written)) == NULL)
        goto done;
    PyObject *mark = PyTuple_New(4), *count = PyLong_FromSsize_t(n);
    if (mark == NULL || count == NULL) {
        Py_XDECREF(mark);
        Py_XDECREF(count);
        goto done;
    }
    PyTuple_SET_ITEM(mark, 0, Py_NewRef(sent));
    PyTuple_SET_ITEM(mark, 1, Py_NewRef(now));
    PyTuple_SET_ITEM(mark, 2, Py_NewRef(data));
    PyTuple_SET_ITEM(mark, 3, count);
    PyObject *r = append_to(self->marks, mark);
    Py_XDECREF(mark);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    result = 0;
done:
    Py_XDECREF(now);
    Py_XDECREF(sent);
    Py_XDECREF(data);
    Py_XDECREF(fresh);
    Py_DECREF(transport);
    Py_DECREF(out);
    return result;
}

static PyObject *
ShardWriter_vectorcall(ShardWriterObject *self, PyObject *const *args, size_t nargsf,
                       PyObject *kwnames)
{
    if (!no_arguments(nargsf, kwnames) || shard_flush(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

BOUND_TYPE(ShardWriterType, ShardWriterObject, "ShardWriter", ShardWriter_vectorcall,
           "ShardWriter(conn, clock, marks): BackendConnection.flush in C (see pool.py).")

/* A client connection's flush in C (ClientConnection.flush is the reference): the replies at
 * the head of client.pending that have arrived leave in one write, in request order; a client
 * that is closing is closed once nothing is pending. */
typedef struct {
    BOUND_HEAD
    PyObject *client;
} ClientWriterObject;

/* The replies at the head of pending, taken off it: a new list (maybe empty), or NULL. */
static PyObject *
take_answered(PyObject *pending)
{
    PyObject *out = PyList_New(0);
    while (out != NULL) {
        Py_ssize_t n = PyObject_Length(pending);
        if (n <= 0) {
            if (n < 0)
                Py_CLEAR(out);
            break;
        }
        PyObject *slot = PySequence_GetItem(pending, 0);
        PyObject *reply = slot == NULL ? NULL : SLOT_GET(slot, reply);
        Py_XDECREF(slot);
        if (reply == NULL || reply == Py_None) {
            if (reply == NULL)
                Py_CLEAR(out);
            Py_XDECREF(reply);
            break;
        }
        PyObject *r = pop_left(pending);
        int e = r == NULL ? -1 : PyList_Append(out, reply);
        Py_XDECREF(r);
        Py_DECREF(reply);
        if (e < 0)
            Py_CLEAR(out);
    }
    return out;
}

static int
client_flush(PyObject *client)
{
    PyObject *transport = CLIENT_GET(client, transport);
    if (transport == NULL || transport == Py_None) {
        Py_XDECREF(transport);
        return transport == NULL ? -1 : 0;
    }
    int result = -1;
    PyObject *data = NULL, *closing = NULL, *out = NULL;
    PyObject *pending = CLIENT_GET(client, pending);
    if (pending == NULL || (out = take_answered(pending)) == NULL)
        goto done;
    if (PyList_GET_SIZE(out) > 0 &&
        ((data = joined(out)) == NULL || write_now_on(transport, CLIENT_GET(client, fd), data) < 0))
        goto done;
    if ((closing = CLIENT_GET(client, closing)) == NULL)
        goto done;
    int is_closing = PyObject_IsTrue(closing);
    Py_ssize_t left = is_closing > 0 ? PyObject_Length(pending) : 1;
    if (is_closing < 0 || left < 0)
        goto done;
    if (left == 0) {
        PyObject *r = PyObject_CallMethodNoArgs(transport, str_close);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    result = 0;
done:
    Py_XDECREF(closing);
    Py_XDECREF(data);
    Py_XDECREF(out);
    Py_XDECREF(pending);
    Py_DECREF(transport);
    return result;
}

static PyObject *
ClientWriter_vectorcall(ClientWriterObject *self, PyObject *const *args, size_t nargsf,
                        PyObject *kwnames)
{
    if (!no_arguments(nargsf, kwnames) || client_flush(self->client) < 0)
        return NULL;
    Py_RETURN_NONE;
}

BOUND_TYPE(ClientWriterType, ClientWriterObject, "ClientWriter", ClientWriter_vectorcall,
           "ClientWriter(client): ClientConnection.flush in C (see server.py).")

/* flusher.Flusher in C (flusher.py is the reference): the same three methods, so registering
 * a connection and the per-turn flush cost no Python frame. */
#define HOLD_UNDER_PER_SHARD 8 /* flusher.HOLD_UNDER_PER_SHARD */
typedef struct {
    PyObject_HEAD
    PyObject *loop;
    PyObject *backends, *clients; /* lists of connections with output this turn */
    PyObject *run;                /* this object's bound run, for loop.call_soon */
    char scheduled;
    char held; /* this run's shard writes were held for one more poll (see flusher.py) */
} FlusherObject;

static int
set_dirty(PyObject *obj, PyObject *value)
{
    PyObject **field = dirty_field(obj);
    if (field == NULL)
        return PyObject_SetAttr(obj, str_dirty, value);
    Py_XSETREF(*field, Py_NewRef(value));
    return 0;
}

/* loop.call_soon(self.run) unless a run is scheduled already; 0 or -1. */
static int
flusher_schedule(FlusherObject *self)
{
    if (self->scheduled)
        return 0;
    if (self->run == NULL && (self->run = PyObject_GetAttr((PyObject *)self, str_run)) == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg(self->loop, str_call_soon, self->run);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    self->scheduled = 1;
    return 0;
}

static PyObject *
flusher_add(FlusherObject *self, PyObject *obj, PyObject *list)
{
    if (set_dirty(obj, Py_True) < 0 || PyList_Append(list, obj) < 0)
        return NULL;
    if (flusher_schedule(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Flusher_add_backend(FlusherObject *self, PyObject *obj)
{
    return flusher_add(self, obj, self->backends);
}

static PyObject *
Flusher_add_client(FlusherObject *self, PyObject *obj)
{
    return flusher_add(self, obj, self->clients);
}

/* Flush each of *list (swapped for a new list first: flushing may register more). */
static int
flush_each(PyObject **list)
{
    PyObject *taken = *list, *fresh = PyList_New(0);
    if (fresh == NULL)
        return -1;
    *list = fresh;
    int result = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(taken); i++) {
        PyObject *obj = PyList_GET_ITEM(taken, i);
        PyObject *r =
            set_dirty(obj, Py_False) < 0 ? NULL : PyObject_CallMethodNoArgs(obj, str_flush);
        if (r == NULL) {
            result = -1;
            break;
        }
        Py_DECREF(r);
    }
    Py_DECREF(taken);
    return result;
}

/* Flusher.worth_holding: 1 when the queued shard writes carry between 2 requests and
 * HOLD_UNDER_PER_SHARD per shard, else 0; -1 on error. */
static int
worth_holding(FlusherObject *self)
{
    Py_ssize_t shards = PyList_GET_SIZE(self->backends), queued = 0;
    for (Py_ssize_t i = 0; i < shards; i++) {
        PyObject *out = BACKEND_GET(PyList_GET_ITEM(self->backends, i), out);
        Py_ssize_t n = out == NULL ? -1 : PyObject_Length(out);
        Py_XDECREF(out);
        if (n < 0)
            return -1;
        queued += n;
    }
    return queued >= 2 && queued < HOLD_UNDER_PER_SHARD * shards;
}

static PyObject *
Flusher_run(FlusherObject *self, PyObject *unused)
{
    self->scheduled = 0;
    int hold = 0;
    if (!self->held && PyList_GET_SIZE(self->backends) && (hold = worth_holding(self)) < 0)
        return NULL;
    if (hold) {
        self->held = 1;
        /* (unless a client's flush registered something and did already) */
        if (flush_each(&self->clients) < 0 || flusher_schedule(self) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    self->held = 0;
    /* Backends first: requests parsed this tick go out before the clients' replies. */
    while (PyList_GET_SIZE(self->backends) || PyList_GET_SIZE(self->clients)) {
        if (flush_each(&self->backends) < 0 || flush_each(&self->clients) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Flusher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *loop;
    static char *kwlist[] = {"loop", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:Flusher", kwlist, &loop))
        return NULL;
    FlusherObject *self = (FlusherObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->loop = Py_NewRef(loop);
    self->backends = PyList_New(0);
    self->clients = PyList_New(0);
    if (self->backends == NULL || self->clients == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
Flusher_traverse(FlusherObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->backends);
    Py_VISIT(self->clients);
    Py_VISIT(self->run);
    return 0;
}

static int
Flusher_clear(FlusherObject *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->backends);
    Py_CLEAR(self->clients);
    Py_CLEAR(self->run);
    return 0;
}

static void
Flusher_dealloc(FlusherObject *self)
{
    PyObject_GC_UnTrack(self);
    Flusher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Flusher_methods[] = {
    {"add_backend", (PyCFunction)Flusher_add_backend, METH_O, "Flush obj at the end of the tick."},
    {"add_client", (PyCFunction)Flusher_add_client, METH_O, "Flush obj after the backends."},
    {"run", (PyCFunction)Flusher_run, METH_NOARGS, "Flush everything registered."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Flusher_members[] = {
    {"backends", T_OBJECT_EX, offsetof(FlusherObject, backends), READONLY, NULL},
    {"clients", T_OBJECT_EX, offsetof(FlusherObject, clients), READONLY, NULL},
    {"scheduled", T_BOOL, offsetof(FlusherObject, scheduled), READONLY, NULL},
    {"held", T_BOOL, offsetof(FlusherObject, held), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FlusherType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cachefleet.sidecar._speedups.Flusher",
    .tp_basicsize = sizeof(FlusherObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Flusher(loop): flusher.Flusher in C.",
    .tp_new = Flusher_new,
    .tp_methods = Flusher_methods,
    .tp_members = Flusher_members,
    .tp_traverse = (traverseproc)Flusher_traverse,
    .tp_clear = (inquiry)Flusher_clear,
    .tp_dealloc = (destructor)Flusher_dealloc,
};


static PyMethodDef methods[] = {
    {"route_requests", (PyCFunction)(void (*)(void))route_requests, METH_FASTCALL,
     route_requests_doc},
    {"deliver_replies", (PyCFunction)(void (*)(void))deliver_replies, METH_FASTCALL,
     deliver_replies_doc},
    {"write_now", (PyCFunction)(void (*)(void))write_now_py, METH_FASTCALL, write_now_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "cachefleet.sidecar._speedups",
    "C versions of the sidecar's per-request loops (server.py and pool.py are the reference).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&RingType) < 0 || PyType_Ready(&RouteTableType) < 0 ||
        PyType_Ready(&FastReaderType) < 0 || PyType_Ready(&ShardReaderType) < 0 ||
        PyType_Ready(&ClientCoreType) < 0 || PyType_Ready(&BackendCoreType) < 0 ||
        PyType_Ready(&SlotCoreType) < 0 || PyType_Ready(&ShardWriterType) < 0 ||
        PyType_Ready(&ClientWriterType) < 0 ||
        PyType_Ready(&FlusherType) < 0)
        return NULL;
#define INTERN(var, text)                                                                     \
    if ((var = PyUnicode_InternFromString(text)) == NULL)                                     \
        return NULL;
    INTERN(str_state, "state")
    INTERN(str_close, "close")
    INTERN(str_out, "out")
    INTERN(str_waiters, "waiters")
    INTERN(str_dirty, "dirty")
    INTERN(str_send, "send")
    INTERN(str_append, "append")
    INTERN(str_client, "client")
    INTERN(str_reply, "reply")
    INTERN(str_popleft, "popleft")
    INTERN(str_pending, "pending")
    INTERN(str_closing, "closing")
    INTERN(str_transport, "transport")
    INTERN(str_write, "write")
    INTERN(str_parent, "parent")
    INTERN(str_part_done, "part_done")
    INTERN(str_fd, "fd")
    INTERN(str_fast, "fast")
    INTERN(str_rest, "rest")
    INTERN(str_sent, "sent")
    INTERN(str_run, "run")
    INTERN(str_call_soon, "call_soon")
    INTERN(str_flush, "flush")
    INTERN(str_join, "join")
    INTERN(str_received, "received")
    INTERN(str_on_push, "on_push")
    INTERN(str_deliver_in_python, "_deliver_in_python")
    INTERN(str_fail, "fail")
    INTERN(orphan_reason, "a reply arrived that nobody asked for")
    INTERN(str_slow_path, "_data_received")
    INTERN(str_route_failed, "_route_failed")
    INTERN(str_is_closing, "is_closing")
    INTERN(str_get_write_buffer_size, "get_write_buffer_size")
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL)
        return NULL;
    deque_type = (PyTypeObject *)PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque_type == NULL || !PyType_Check(deque_type) ||
        (deque_append = PyObject_GetAttrString((PyObject *)deque_type, "append")) == NULL ||
        (deque_popleft = PyObject_GetAttrString((PyObject *)deque_type, "popleft")) == NULL)
        return NULL;
    if ((one = PyLong_FromLong(1)) == NULL || (zero = PyLong_FromLong(0)) == NULL ||
        (empty_bytes = PyBytes_FromStringAndSize("", 0)) == NULL)
        return NULL;
#undef INTERN
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&RouteTableType);
    if (PyModule_AddObject(m, "RouteTable", (PyObject *)&RouteTableType) < 0) {
        Py_DECREF(&RouteTableType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FastReaderType);
    if (PyModule_AddObject(m, "FastReader", (PyObject *)&FastReaderType) < 0) {
        Py_DECREF(&FastReaderType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ShardReaderType);
    if (PyModule_AddObject(m, "ShardReader", (PyObject *)&ShardReaderType) < 0) {
        Py_DECREF(&ShardReaderType);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddType(m, &ClientCoreType) < 0 || PyModule_AddType(m, &BackendCoreType) < 0 ||
        PyModule_AddType(m, &SlotCoreType) < 0 || PyModule_AddType(m, &ShardWriterType) < 0 ||
        PyModule_AddType(m, &ClientWriterType) < 0 ||
        PyModule_AddType(m, &FlusherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (cf_hotkeys_register(m) < 0 || cf_latency_register(m) < 0)
        Py_CLEAR(m);
    return m;
}
