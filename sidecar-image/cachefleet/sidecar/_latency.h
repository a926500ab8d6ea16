/* Shard round-trip histograms in C: stats.Latency (the reference) with its observe in C, so a
 * shard connection's reader times each answered write without a Python frame.
 *
 * The type is cachefleet.sidecar._speedups.Latency(bounds, window_bounds): a histogram over
 * `bounds` (seconds, ascending; one more bucket above the last) with the sum and count of its
 * observations, and a second one over `window_bounds` that the health monitor takes and resets
 * each tick. Every call here needs the GIL.
 */
#ifndef CACHEFLEET_LATENCY_H
#define CACHEFLEET_LATENCY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Adds the Latency type to the module; 0, or -1 with an exception set. */
int cf_latency_register(PyObject *module);

/* The Latency whose bound `observe` method this is (borrowed), or NULL when it is anything
 * else (a Python callable: the caller calls it with a float instead). */
PyObject *cf_latency_of_observe(PyObject *observe);

/* latency.observe(seconds) without a float object; latency must be a Latency. */
void cf_latency_observe(PyObject *latency, double seconds);

/* The clock time.monotonic() reads (CLOCK_MONOTONIC), in seconds, at full resolution: the
 * round trips it times are tens of microseconds. */
double cf_monotonic_seconds(void);

#endif
