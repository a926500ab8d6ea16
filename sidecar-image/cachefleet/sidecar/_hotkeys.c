/* Hot-key detection in C: sketch.py and hotkeys.py (the reference) step for step.
 *
 * A Count-Min sketch with conservative update over a window of sub-windows, and a table of the
 * top K keys fed by it; a tracked key above the threshold rate is hot. The module docstrings of
 * sketch.py and hotkeys.py explain the choices; this file repeats only what is C-specific. All
 * the arithmetic is on integers, so both give identical results for the same stream and clock.
 *
 * The per-request call, cf_hotkeys_observe, allocates nothing unless the key enters the top-K
 * table, and touches one cache line of counters per sketch row.
 */
#include "_hotkeys.h"

#include <string.h>
#include <time.h>

#define COUNTER_MAX UINT32_MAX
#define ROW_SALT_STEP 0x9E3779B9u
#define MAX_CELLS ((long long)1 << 28)
#define MAX_DEPTH 16
#define MAX_SUB_WINDOWS 16

/* The clock time.monotonic_ns reads, as of the last timer tick (a few ms at most): about 10 ns
 * a call instead of about 25-60, and sub-windows are hundreds of milliseconds long. */
#ifdef CLOCK_MONOTONIC_COARSE
#define FAST_MONOTONIC_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define FAST_MONOTONIC_CLOCK CLOCK_MONOTONIC
#endif

typedef struct {
    PyObject *key; /* bytes; NULL when the slot is free */
    uint32_t key_hash;
    int hot;
    uint64_t count; /* the key's window estimate when last read */
} Entry;

typedef struct {
    PyObject_HEAD
    uint32_t *cells; /* [row][column][sub-window] */
    uint32_t width, depth, sub_windows, current;
    Py_ssize_t top_k, tracked;
    Entry *entries;
    int32_t *index; /* linear probing on key_hash: entry slot + 1, 0 when empty */
    uint32_t index_mask;
    uint64_t threshold, cool_threshold;
    uint64_t admit_min; /* a key not tracked yet enters the table from this window count */
    int64_t window_ms, slice_ns, start_ns, last_ns, epoch;
    int64_t epoch_end_ns, window_start_ns; /* of the current epoch, from set_epoch */
    uint64_t covered_us;
    uint64_t floor; /* the smallest count of a full table, at floor_slot */
    Py_ssize_t floor_slot;
    int floor_stale;
    PyObject *clock;    /* NULL: CLOCK_MONOTONIC */
    PyObject *hot;      /* set of the hot keys */
    PyObject *hot_view; /* a frozenset of them, made on demand; NULL after a change */
    uint64_t generation;
    /* The cells cf_hotkeys_prefetch located, for the observe that follows it. */
    int prefetched;
    uint32_t prefetched_hash;
    size_t prefetched_starts[MAX_DEPTH];
} HotKeysObject;

static PyTypeObject HotKeysType;

/* -- the sketch ------------------------------------------------------------------------------ */

static uint32_t
fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

/* Where the key's cell starts in each row: murmur3's finaliser of the hash xor the row's salt,
 * reduced to a column by multiply-shift (sketch.py says why not double hashing). */
static void
cell_starts(const HotKeysObject *t, uint32_t key_hash, size_t *starts)
{
    for (uint32_t row = 0; row < t->depth; row++) {
        uint32_t g = fmix32(key_hash ^ (row * ROW_SALT_STEP)); /* the salt wraps mod 2**32 */
        size_t column = (size_t)(((uint64_t)g * t->width) >> 32);
        starts[row] = ((size_t)row * t->width + column) * t->sub_windows;
    }
}

static uint64_t
window_count(const HotKeysObject *t, const size_t *starts)
{
    uint64_t total = 0;
    for (uint32_t slot = 0; slot < t->sub_windows; slot++) {
        uint32_t least = COUNTER_MAX;
        for (uint32_t row = 0; row < t->depth; row++) {
            uint32_t v = t->cells[starts[row] + slot];
            if (v < least)
                least = v;
        }
        total += least;
    }
    return total;
}

static uint64_t
sketch_estimate(const HotKeysObject *t, uint32_t key_hash)
{
    size_t starts[MAX_DEPTH];
    cell_starts(t, key_hash, starts);
    return window_count(t, starts);
}

/* Counts one occurrence by conservative update; returns the key's window estimate. The update
 * is branch-free (every row adds "held the least"): which rows hold it is a coin toss per key,
 * and the mispredicted branch cost more than the rest of the update. */
static uint64_t
sketch_add(HotKeysObject *t, uint32_t key_hash)
{
    size_t starts[MAX_DEPTH];
    if (t->prefetched && t->prefetched_hash == key_hash)
        memcpy(starts, t->prefetched_starts, sizeof(size_t) * t->depth);
    else
        cell_starts(t, key_hash, starts);
    t->prefetched = 0;
    uint32_t *cells = t->cells;
    const uint32_t depth = t->depth, n = t->sub_windows, current = t->current;
    uint32_t *at[MAX_DEPTH];
    uint32_t floor = COUNTER_MAX;
    for (uint32_t row = 0; row < depth; row++) {
        at[row] = cells + starts[row];
        uint32_t v = at[row][current];
        floor = v < floor ? v : floor;
    }
    if (floor < COUNTER_MAX) {
        for (uint32_t row = 0; row < depth; row++)
            at[row][current] += at[row][current] == floor;
    }
    uint64_t total = 0;
    for (uint32_t slot = 0; slot < n; slot++) {
        uint32_t least = COUNTER_MAX;
        for (uint32_t row = 0; row < depth; row++) {
            uint32_t v = at[row][slot];
            least = v < least ? v : least;
        }
        total += least;
    }
    return total;
}

static void
sketch_advance(HotKeysObject *t, int64_t steps)
{
    uint32_t n = t->sub_windows;
    int64_t clear = steps < (int64_t)n ? steps : (int64_t)n;
    size_t cells = (size_t)t->width * t->depth;
    for (int64_t step = 1; step <= clear; step++) {
        uint32_t slot = (uint32_t)((t->current + step) % n);
        for (size_t c = 0; c < cells; c++)
            t->cells[c * n + slot] = 0;
    }
    t->current = (uint32_t)((t->current + steps) % n);
}

/* -- the hot set and the top-K table ---------------------------------------------------------- */

static void
hot_changed(HotKeysObject *t)
{
    t->generation++;
    Py_CLEAR(t->hot_view);
}

/* Hot above the threshold, cool below cool_percent of it: 1 hot, 0 not, -1 on error.
 * No overflow: count < 2**36, covered_us < 2**26 and threshold < 2**30 (check_parameters). */
static int
judge(HotKeysObject *t, Entry *e)
{
    uint64_t scaled = e->count * 1000000u;
    if (!e->hot) {
        if (scaled > t->threshold * t->covered_us) {
            if (PySet_Add(t->hot, e->key) < 0)
                return -1;
            e->hot = 1;
            hot_changed(t);
        }
    }
    else if (scaled < t->cool_threshold * t->covered_us) {
        if (PySet_Discard(t->hot, e->key) < 0)
            return -1;
        e->hot = 0;
        hot_changed(t);
    }
    return e->hot;
}

static Py_ssize_t
find_slot(const HotKeysObject *t, uint32_t key_hash, const char *key, Py_ssize_t len)
{
    uint32_t i = key_hash & t->index_mask;
    for (;;) {
        int32_t at = t->index[i];
        if (at == 0)
            return -1;
        const Entry *e = &t->entries[at - 1];
        if (e->key_hash == key_hash && PyBytes_GET_SIZE(e->key) == len &&
            memcmp(PyBytes_AS_STRING(e->key), key, (size_t)len) == 0)
            return at - 1;
        i = (i + 1) & t->index_mask;
    }
}

static void
index_insert(HotKeysObject *t, Py_ssize_t slot)
{
    uint32_t i = t->entries[slot].key_hash & t->index_mask;
    while (t->index[i] != 0)
        i = (i + 1) & t->index_mask;
    t->index[i] = (int32_t)(slot + 1);
}

/* Linear probing's deletion without tombstones: later entries of the run move back. */
static void
index_remove(HotKeysObject *t, Py_ssize_t slot)
{
    uint32_t mask = t->index_mask, i = t->entries[slot].key_hash & mask, j;
    while (t->index[i] != slot + 1)
        i = (i + 1) & mask;
    t->index[i] = 0;
    for (j = i;;) {
        j = (j + 1) & mask;
        if (t->index[j] == 0)
            return;
        uint32_t home = t->entries[t->index[j] - 1].key_hash & mask;
        int reachable = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!reachable) {
            t->index[i] = t->index[j];
            t->index[j] = 0;
            i = j;
        }
    }
}

/* key_obj, when it is exact bytes holding key, is kept instead of a copy. */
static int
admit(HotKeysObject *t, Py_ssize_t slot, const char *key, Py_ssize_t len, PyObject *key_obj,
      uint32_t key_hash, uint64_t count)
{
    PyObject *stored;
    if (key_obj != NULL && PyBytes_CheckExact(key_obj)) {
        stored = key_obj;
        Py_INCREF(stored);
    }
    else if ((stored = PyBytes_FromStringAndSize(key, len)) == NULL) {
        return -1;
    }
    Entry *e = &t->entries[slot];
    e->key = stored;
    e->key_hash = key_hash;
    e->count = count;
    e->hot = 0;
    index_insert(t, slot);
    t->tracked++;
    t->floor_stale = 1;
    return judge(t, e);
}

static int
remove_entry(HotKeysObject *t, Py_ssize_t slot)
{
    Entry *e = &t->entries[slot];
    int r = 0;
    index_remove(t, slot);
    t->tracked--;
    if (e->hot) {
        r = PySet_Discard(t->hot, e->key) < 0 ? -1 : 0;
        e->hot = 0;
        hot_changed(t);
    }
    Py_CLEAR(e->key);
    return r;
}

static Py_ssize_t
first_free_slot(const HotKeysObject *t)
{
    Py_ssize_t slot = 0;
    while (t->entries[slot].key != NULL)
        slot++;
    return slot;
}

static void
find_floor(HotKeysObject *t)
{
    uint64_t least = 0;
    for (Py_ssize_t slot = 0; slot < t->top_k; slot++) {
        if (slot == 0 || t->entries[slot].count < least) {
            least = t->entries[slot].count;
            t->floor_slot = slot;
        }
    }
    t->floor = least;
    t->floor_stale = 0;
}

/* -- the window ------------------------------------------------------------------------------- */

static int
read_clock(HotKeysObject *t, int64_t *now)
{
    if (t->clock == NULL) {
        struct timespec ts;
        clock_gettime(FAST_MONOTONIC_CLOCK, &ts);
        *now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        return 0;
    }
    PyObject *r = PyObject_CallNoArgs(t->clock);
    if (r == NULL)
        return -1;
    if (!PyLong_Check(r)) {
        Py_DECREF(r);
        PyErr_SetString(PyExc_TypeError, "the clock must return int nanoseconds");
        return -1;
    }
    long long v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0) {
        PyErr_SetString(PyExc_ValueError, "the clock must not read below zero");
        return -1;
    }
    *now = v;
    return 0;
}

/* Re-read every tracked key's count after the oldest sub-window was dropped. */
static int
refresh(HotKeysObject *t)
{
    int r = 0;
    for (Py_ssize_t slot = 0; slot < t->top_k; slot++) {
        Entry *e = &t->entries[slot];
        if (e->key == NULL)
            continue;
        e->count = sketch_estimate(t, e->key_hash);
        if ((e->count == 0 ? remove_entry(t, slot) : judge(t, e)) < 0)
            r = -1;
    }
    t->floor_stale = 1;
    return r;
}

static void
set_epoch(HotKeysObject *t, int64_t epoch)
{
    t->epoch = epoch;
    t->epoch_end_ns = (epoch + 1) * t->slice_ns;
    t->window_start_ns = (epoch - (int64_t)t->sub_windows + 1) * t->slice_ns;
    if (t->window_start_ns < t->start_ns)
        t->window_start_ns = t->start_ns;
}

static int
advance_to(HotKeysObject *t, int64_t now)
{
    if (now < t->last_ns)
        now = t->last_ns;
    t->last_ns = now;
    /* Within the current sub-window (nearly every call) the epoch is known without a division:
     * the same epoch as the reference's now // slice_ns. */
    int rotated = now >= t->epoch_end_ns;
    if (rotated) {
        int64_t epoch = now / t->slice_ns; /* now >= 0: Python's floor division */
        sketch_advance(t, epoch - t->epoch);
        set_epoch(t, epoch);
    }
    int64_t covered = now - t->window_start_ns;
    if (covered < t->slice_ns)
        covered = t->slice_ns;
    t->covered_us = (uint64_t)(covered / 1000);
    return rotated ? refresh(t) : 0;
}

static int
advance(HotKeysObject *t)
{
    int64_t now;
    return read_clock(t, &now) < 0 ? -1 : advance_to(t, now);
}

/* -- per request ------------------------------------------------------------------------------ */

/* now: the tracker's clock, read by the caller (advance_to). */
static int
observe(HotKeysObject *t, int64_t now, uint32_t key_hash, const char *key, Py_ssize_t len,
        PyObject *key_obj)
{
    if (advance_to(t, now) < 0)
        return -1;
    uint64_t count = sketch_add(t, key_hash);
    Py_ssize_t slot = find_slot(t, key_hash, key, len);
    if (slot >= 0) {
        Entry *e = &t->entries[slot];
        e->count = count;
        if (slot == t->floor_slot)
            t->floor_stale = 1;
        return judge(t, e);
    }
    if (count < t->admit_min)
        return 0; /* far from hot: not worth a place (uniform traffic would churn the table) */
    if (t->tracked < t->top_k)
        return admit(t, first_free_slot(t), key, len, key_obj, key_hash, count);
    for (;;) {
        if (t->floor_stale)
            find_floor(t);
        if (count <= t->floor)
            return 0;
        Entry *victim = &t->entries[t->floor_slot];
        uint64_t fresh = sketch_estimate(t, victim->key_hash);
        if (fresh < count) {
            slot = t->floor_slot;
            if (remove_entry(t, slot) < 0)
                return -1;
            return admit(t, slot, key, len, key_obj, key_hash, count);
        }
        victim->count = fresh;
        if (judge(t, victim) < 0)
            return -1;
        t->floor_stale = 1;
    }
}

static int ready(HotKeysObject *self);

int
cf_hotkeys_now(PyObject *tracker, int64_t *now)
{
    return read_clock((HotKeysObject *)tracker, now);
}

int
cf_hotkeys_observe_at(PyObject *tracker, int64_t now, uint32_t key_hash, const char *key,
                      Py_ssize_t len)
{
    /* a failed re-__init__ leaves the tracker empty: an error, never a crash */
    if (ready((HotKeysObject *)tracker) < 0)
        return -1;
    return observe((HotKeysObject *)tracker, now, key_hash, key, len, NULL);
}

int
cf_hotkeys_observe(PyObject *tracker, uint32_t key_hash, const char *key, Py_ssize_t len)
{
    int64_t now;
    if (cf_hotkeys_now(tracker, &now) < 0)
        return -1;
    return cf_hotkeys_observe_at(tracker, now, key_hash, key, len);
}

void
cf_hotkeys_prefetch(PyObject *tracker, uint32_t key_hash)
{
    HotKeysObject *t = (HotKeysObject *)tracker;
    if (t->cells == NULL)
        return;
    cell_starts(t, key_hash, t->prefetched_starts);
    t->prefetched = 1;
    t->prefetched_hash = key_hash;
    for (uint32_t row = 0; row < t->depth; row++)
        __builtin_prefetch(&t->cells[t->prefetched_starts[row]], 1, 3);
}

int
cf_hotkeys_check(PyObject *obj)
{
    return PyObject_TypeCheck(obj, &HotKeysType) && ((HotKeysObject *)obj)->cells != NULL;
}

uint64_t
cf_hotkeys_generation(PyObject *tracker)
{
    return ((HotKeysObject *)tracker)->generation;
}

/* -- the Python type -------------------------------------------------------------------------- */

static void
release(HotKeysObject *t)
{
    if (t->entries != NULL) {
        for (Py_ssize_t slot = 0; slot < t->top_k; slot++)
            Py_CLEAR(t->entries[slot].key);
    }
    PyMem_Free(t->cells);
    PyMem_Free(t->entries);
    PyMem_Free(t->index);
    t->cells = NULL;
    t->entries = NULL;
    t->index = NULL;
    t->top_k = t->tracked = 0;
    t->prefetched = 0;
    Py_CLEAR(t->clock);
    Py_CLEAR(t->hot);
    Py_CLEAR(t->hot_view);
}

/* The bounds of hotkeys.check_parameters, with the same messages. */
static int
check_bound(const char *name, Py_ssize_t value, Py_ssize_t low, Py_ssize_t high)
{
    if (value < low || value > high) {
        PyErr_Format(PyExc_ValueError, "%s must be in [%zd, %zd], not %zd", name, low, high,
                     value);
        return -1;
    }
    return 0;
}

static int
HotKeys_init(HotKeysObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"width",     "depth",       "top_k",        "threshold_per_second",
                             "window_ms", "sub_windows", "cool_percent", "clock",
                             "admit_percent", NULL};
    Py_ssize_t width, depth, top_k = 64, threshold = 1000, window_ms = 1000, sub_windows = 4,
                             cool_percent = 90, admit_percent = 12;
    PyObject *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nn|$nnnnnOn:HotKeys", kwlist, &width, &depth,
                                     &top_k, &threshold, &window_ms, &sub_windows,
                                     &cool_percent, &clock, &admit_percent))
        return -1;
    if (check_bound("admit_percent", admit_percent, 0, 100) < 0)
        return -1;
    if (check_bound("width", width, 1, MAX_CELLS) < 0 ||
        check_bound("depth", depth, 1, MAX_DEPTH) < 0 ||
        check_bound("top_k", top_k, 1, 10000) < 0 ||
        check_bound("threshold_per_second", threshold, 1, 1000000000) < 0 ||
        check_bound("window_ms", window_ms, 1, 60000) < 0 ||
        check_bound("sub_windows", sub_windows, 1, MAX_SUB_WINDOWS) < 0 ||
        check_bound("cool_percent", cool_percent, 1, 100) < 0)
        return -1;
    if ((long long)width * depth * sub_windows > MAX_CELLS) {
        PyErr_Format(PyExc_ValueError, "a sketch of %zd x %zd x %zd counters is too large", width,
                     depth, sub_windows);
        return -1;
    }
    if (clock != Py_None && !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "clock must be callable");
        return -1;
    }
    release(self);
    uint32_t index_size = 8;
    while (index_size < 2 * (uint32_t)top_k)
        index_size *= 2;
    self->cells = PyMem_Calloc((size_t)(width * depth * sub_windows), sizeof(uint32_t));
    self->entries = PyMem_Calloc((size_t)top_k, sizeof(Entry));
    self->index = PyMem_Calloc(index_size, sizeof(int32_t));
    self->hot = PySet_New(NULL);
    self->hot_view = PyFrozenSet_New(NULL);
    if (self->cells == NULL || self->entries == NULL || self->index == NULL) {
        release(self);
        PyErr_NoMemory();
        return -1;
    }
    if (self->hot == NULL || self->hot_view == NULL) {
        release(self);
        return -1;
    }
    self->width = (uint32_t)width;
    self->depth = (uint32_t)depth;
    self->sub_windows = (uint32_t)sub_windows;
    self->current = 0;
    self->top_k = top_k;
    self->tracked = 0;
    self->index_mask = index_size - 1;
    self->threshold = (uint64_t)threshold;
    self->cool_threshold = (uint64_t)threshold * (uint64_t)cool_percent / 100;
    self->admit_min = (uint64_t)threshold * (uint64_t)window_ms * (uint64_t)admit_percent / 100000;
    self->window_ms = window_ms;
    self->slice_ns = (int64_t)window_ms * 1000000 / sub_windows;
    self->floor = 0;
    self->floor_slot = 0;
    self->floor_stale = 1;
    self->generation = 0;
    if (clock != Py_None) {
        Py_INCREF(clock);
        self->clock = clock;
    }
    int64_t now;
    if (read_clock(self, &now) < 0) {
        release(self);
        return -1;
    }
    self->start_ns = self->last_ns = now;
    set_epoch(self, now / self->slice_ns);
    self->covered_us = (uint64_t)(self->slice_ns / 1000);
    return 0;
}

static int
HotKeys_traverse(HotKeysObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->clock);
    return 0;
}

static int
HotKeys_clear(HotKeysObject *self)
{
    Py_CLEAR(self->clock);
    return 0;
}

static void
HotKeys_dealloc(HotKeysObject *self)
{
    PyObject_GC_UnTrack(self);
    release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(HotKeysObject *self)
{
    if (self->cells == NULL) {
        PyErr_SetString(PyExc_ValueError, "HotKeys not initialised");
        return -1;
    }
    return 0;
}

static int
parse_hash(PyObject *obj, uint32_t *out)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < 0 || v > 0xFFFFFFFFLL) {
        PyErr_SetString(PyExc_ValueError, "key_hash must be in [0, 2**32)");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static PyObject *
HotKeys_observe(HotKeysObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t key_hash;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "observe(key, key_hash)");
        return NULL;
    }
    if (ready(self) < 0)
        return NULL;
    if (!PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "key must be bytes");
        return NULL;
    }
    if (parse_hash(args[1], &key_hash) < 0)
        return NULL;
    /* the key object itself is kept if the key enters the table: no copy */
    int64_t now;
    if (read_clock(self, &now) < 0)
        return NULL;
    int hot = observe(self, now, key_hash, PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]),
                      args[0]);
    return hot < 0 ? NULL : PyBool_FromLong(hot);
}

static PyObject *
HotKeys_observe_all(HotKeysObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "observe_all(keys, key_hashes)");
        return NULL;
    }
    if (ready(self) < 0)
        return NULL;
    PyObject *keys = PySequence_Fast(args[0], "keys must be a sequence");
    if (keys == NULL)
        return NULL;
    PyObject *hashes = PySequence_Fast(args[1], "key_hashes must be a sequence");
    if (hashes == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(keys), hot = 0;
    int r = 0;
    if (PySequence_Fast_GET_SIZE(hashes) != n) {
        PyErr_SetString(PyExc_ValueError, "need one hash per key");
        r = -1;
    }
    /* Through cf_hotkeys_observe, as the request loop calls it for a read of one request (keys
     * copied on entry; a read of several reads the clock once for all). */
    for (Py_ssize_t i = 0; r >= 0 && i < n; i++) {
        PyObject *key = PySequence_Fast_GET_ITEM(keys, i);
        uint32_t key_hash;
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "key must be bytes");
            r = -1;
        }
        else if ((r = parse_hash(PySequence_Fast_GET_ITEM(hashes, i), &key_hash)) == 0) {
            r = cf_hotkeys_observe((PyObject *)self, key_hash, PyBytes_AS_STRING(key),
                                   PyBytes_GET_SIZE(key));
            hot += r > 0;
        }
    }
    Py_DECREF(keys);
    Py_DECREF(hashes);
    return r < 0 ? NULL : PyLong_FromSsize_t(hot);
}

static PyObject *
HotKeys_estimate(HotKeysObject *self, PyObject *hash_obj)
{
    uint32_t key_hash;
    if (ready(self) < 0 || parse_hash(hash_obj, &key_hash) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(sketch_estimate(self, key_hash));
}

static PyObject *
HotKeys_tick(HotKeysObject *self, PyObject *unused)
{
    if (ready(self) < 0 || advance(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
HotKeys_hot_keys(HotKeysObject *self, PyObject *unused)
{
    if (ready(self) < 0)
        return NULL;
    if (self->hot_view == NULL && (self->hot_view = PyFrozenSet_New(self->hot)) == NULL)
        return NULL;
    Py_INCREF(self->hot_view);
    return self->hot_view;
}

/* Heaviest first, then by key as bytes compare. */
static int
compare_entries(const void *a, const void *b)
{
    const Entry *x = *(const Entry *const *)a, *y = *(const Entry *const *)b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    Py_ssize_t lx = PyBytes_GET_SIZE(x->key), ly = PyBytes_GET_SIZE(y->key);
    int c = memcmp(PyBytes_AS_STRING(x->key), PyBytes_AS_STRING(y->key),
                   (size_t)(lx < ly ? lx : ly));
    if (c != 0)
        return c;
    return lx < ly ? -1 : lx > ly;
}

/* (key, count, count * 10**6 / covered_us as Python's true division, hot) */
static PyObject *
snapshot_row(const Entry *e, PyObject *covered)
{
    PyObject *scaled = PyLong_FromUnsignedLongLong(e->count * 1000000u);
    PyObject *rate = scaled ? PyNumber_TrueDivide(scaled, covered) : NULL;
    Py_XDECREF(scaled);
    if (rate == NULL)
        return NULL;
    return Py_BuildValue("(OKNO)", e->key, (unsigned long long)e->count, rate,
                         e->hot ? Py_True : Py_False);
}

static PyObject *
HotKeys_snapshot(HotKeysObject *self, PyObject *unused)
{
    if (ready(self) < 0 || advance(self) < 0)
        return NULL;
    Py_ssize_t n = 0;
    const Entry **rows = PyMem_New(const Entry *, (size_t)self->tracked + 1);
    if (rows == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t slot = 0; slot < self->top_k; slot++) {
        if (self->entries[slot].key != NULL)
            rows[n++] = &self->entries[slot];
    }
    qsort(rows, (size_t)n, sizeof(rows[0]), compare_entries);
    PyObject *covered = PyLong_FromUnsignedLongLong(self->covered_us);
    PyObject *out = covered ? PyList_New(n) : NULL;
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *row = snapshot_row(rows[i], covered);
        if (row == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, row);
    }
    Py_XDECREF(covered);
    PyMem_Free(rows);
    return out;
}

static PyMethodDef HotKeys_methods[] = {
    {"observe", (PyCFunction)(void (*)(void))HotKeys_observe, METH_FASTCALL,
     "observe(key, key_hash) -> hot: count one request for key (key_hash: its whole-key "
     "murmur3)"},
    {"observe_all", (PyCFunction)(void (*)(void))HotKeys_observe_all, METH_FASTCALL,
     "observe_all(keys, key_hashes) -> how many were hot: observe each in turn"},
    {"estimate", (PyCFunction)HotKeys_estimate, METH_O,
     "estimate(key_hash) -> the sketch's count over the window"},
    {"tick", (PyCFunction)HotKeys_tick, METH_NOARGS,
     "tick(): read the clock and move the window on"},
    {"hot_keys", (PyCFunction)HotKeys_hot_keys, METH_NOARGS,
     "hot_keys() -> frozenset of the hot keys"},
    {"snapshot", (PyCFunction)HotKeys_snapshot, METH_NOARGS,
     "snapshot() -> [(key, count, rate per second, hot)], heaviest first"},
    {NULL, NULL, 0, NULL},
};

#define GETTER(name, expr)                                                                      \
    static PyObject *HotKeys_get_##name(HotKeysObject *self, void *closure)                     \
    {                                                                                           \
        return PyLong_FromUnsignedLongLong((unsigned long long)(expr));                         \
    }
GETTER(width, self->width)
GETTER(depth, self->depth)
GETTER(sub_windows, self->sub_windows)
GETTER(window_ms, self->window_ms)
GETTER(top_k, self->top_k)
GETTER(threshold_per_second, self->threshold)
GETTER(memory_bytes, sizeof(uint32_t) * self->width * self->depth * self->sub_windows)
GETTER(hot_generation, self->generation)
#undef GETTER

#define GETSET(name) {#name, (getter)HotKeys_get_##name, NULL, NULL, NULL}
static PyGetSetDef HotKeys_getset[] = {
    GETSET(width),        GETSET(depth),
    GETSET(sub_windows),  GETSET(window_ms),
    GETSET(top_k),        GETSET(threshold_per_second),
    GETSET(memory_bytes), GETSET(hot_generation),
    {NULL, NULL, NULL, NULL, NULL},
};
#undef GETSET

static PyTypeObject HotKeysType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cachefleet.sidecar._speedups.HotKeys",
    .tp_basicsize = sizeof(HotKeysObject),
    .tp_dealloc = (destructor)HotKeys_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "HotKeys(width, depth, *, top_k=64, threshold_per_second=1000, window_ms=1000, "
              "sub_windows=4, cool_percent=90, clock=None, admit_percent=12): hotkeys.HotKeys in C",
    .tp_traverse = (traverseproc)HotKeys_traverse,
    .tp_clear = (inquiry)HotKeys_clear,
    .tp_methods = HotKeys_methods,
    .tp_getset = HotKeys_getset,
    .tp_init = (initproc)HotKeys_init,
    .tp_new = PyType_GenericNew,
};

int
cf_hotkeys_register(PyObject *module)
{
    if (PyType_Ready(&HotKeysType) < 0)
        return -1;
    return PyModule_AddType(module, &HotKeysType);
}
