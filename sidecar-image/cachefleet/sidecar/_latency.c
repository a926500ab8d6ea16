/* Shard round-trip histograms in C: stats.Latency step for step (see _latency.h). */
#include "_latency.h"

#include <string.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    Py_ssize_t n_bounds, n_window_bounds;
    double *bounds, *window_bounds; /* ascending seconds */
    unsigned long long *buckets;    /* n_bounds + 1 */
    unsigned long long *window;     /* n_window_bounds + 1 */
    unsigned long long count;
    double total;
} LatencyObject;

static PyTypeObject LatencyType;

double
cf_monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* bisect.bisect_left: how many bounds lie below x. */
static Py_ssize_t
bisect_left(const double *bounds, Py_ssize_t n, double x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (bounds[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void
cf_latency_observe(PyObject *latency, double seconds)
{
    LatencyObject *self = (LatencyObject *)latency;
    self->buckets[bisect_left(self->bounds, self->n_bounds, seconds)]++;
    self->total += seconds;
    self->count++;
    self->window[bisect_left(self->window_bounds, self->n_window_bounds, seconds)]++;
}

PyObject *
cf_latency_of_observe(PyObject *observe)
{
    if (!PyCFunction_Check(observe))
        return NULL;
    PyObject *owner = PyCFunction_GET_SELF(observe);
    return owner != NULL && Py_IS_TYPE(owner, &LatencyType) && ((LatencyObject *)owner)->buckets
               ? owner
               : NULL;
}

/* A sequence of floats, ascending, into a new C array. */
static double *
read_bounds(PyObject *seq, Py_ssize_t *n, const char *what)
{
    PyObject *fast = PySequence_Fast(seq, "Latency bounds must be a sequence of seconds");
    if (fast == NULL)
        return NULL;
    *n = PySequence_Fast_GET_SIZE(fast);
    double *out = PyMem_New(double, *n > 0 ? *n : 1);
    if (out == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        out[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (out[i] == -1.0 && PyErr_Occurred())
            goto fail;
        if (i > 0 && !(out[i] > out[i - 1])) {
            PyErr_Format(PyExc_ValueError, "Latency %s must be strictly ascending", what);
            goto fail;
        }
    }
    Py_DECREF(fast);
    return out;
fail:
    Py_DECREF(fast);
    PyMem_Free(out);
    return NULL;
}

static void
free_arrays(LatencyObject *self)
{
    PyMem_Free(self->bounds);
    PyMem_Free(self->window_bounds);
    PyMem_Free(self->buckets);
    PyMem_Free(self->window);
    self->bounds = self->window_bounds = NULL;
    self->buckets = self->window = NULL;
}

static int
Latency_init(LatencyObject *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"bounds", "window_bounds", NULL};
    PyObject *bounds, *window_bounds;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:Latency", keywords, &bounds,
                                     &window_bounds))
        return -1;
    free_arrays(self);
    self->count = 0;
    self->total = 0.0;
    if ((self->bounds = read_bounds(bounds, &self->n_bounds, "bounds")) == NULL ||
        (self->window_bounds =
             read_bounds(window_bounds, &self->n_window_bounds, "window_bounds")) == NULL ||
        (self->buckets = PyMem_Calloc((size_t)self->n_bounds + 1, sizeof(unsigned long long))) ==
            NULL ||
        (self->window = PyMem_Calloc((size_t)self->n_window_bounds + 1,
                                     sizeof(unsigned long long))) == NULL) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        free_arrays(self);
        return -1;
    }
    return 0;
}

static void
Latency_dealloc(LatencyObject *self)
{
    free_arrays(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
ready(LatencyObject *self)
{
    if (self->buckets != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "Latency was not initialised");
    return 0;
}

static PyObject *
Latency_observe(LatencyObject *self, PyObject *seconds)
{
    double value = PyFloat_AsDouble(seconds);
    if ((value == -1.0 && PyErr_Occurred()) || !ready(self))
        return NULL;
    cf_latency_observe((PyObject *)self, value);
    Py_RETURN_NONE;
}

static PyObject *
counts_list(const unsigned long long *counts, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(counts[i]);
        if (v == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *
Latency_take_window(LatencyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!ready(self))
        return NULL;
    PyObject *window = counts_list(self->window, self->n_window_bounds + 1);
    if (window != NULL)
        memset(self->window, 0, sizeof(unsigned long long) * ((size_t)self->n_window_bounds + 1));
    return window;
}

static PyObject *
Latency_get_buckets(LatencyObject *self, void *Py_UNUSED(closure))
{
    return ready(self) ? counts_list(self->buckets, self->n_bounds + 1) : NULL;
}

static PyObject *
Latency_get_window(LatencyObject *self, void *Py_UNUSED(closure))
{
    return ready(self) ? counts_list(self->window, self->n_window_bounds + 1) : NULL;
}

static PyObject *
Latency_get_total(LatencyObject *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->total);
}

static PyObject *
Latency_get_count(LatencyObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->count);
}

static PyMethodDef Latency_methods[] = {
    {"observe", (PyCFunction)Latency_observe, METH_O, "observe(seconds): one round trip"},
    {"take_window", (PyCFunction)Latency_take_window, METH_NOARGS,
     "take_window(): the window's counts since the last take, and a fresh window"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Latency_getset[] = {
    {"buckets", (getter)Latency_get_buckets, NULL, "counts per bound, and above the last", NULL},
    {"window", (getter)Latency_get_window, NULL, "the window's counts (a copy)", NULL},
    {"total", (getter)Latency_get_total, NULL, "the sum of the observations, in seconds", NULL},
    {"count", (getter)Latency_get_count, NULL, "how many observations", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject LatencyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cachefleet.sidecar._speedups.Latency",
    .tp_basicsize = sizeof(LatencyObject),
    .tp_dealloc = (destructor)Latency_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Latency(bounds, window_bounds): stats.Latency in C",
    .tp_methods = Latency_methods,
    .tp_getset = Latency_getset,
    .tp_init = (initproc)Latency_init,
    .tp_new = PyType_GenericNew,
};

int
cf_latency_register(PyObject *module)
{
    if (PyType_Ready(&LatencyType) < 0)
        return -1;
    return PyModule_AddType(module, &LatencyType);
}
