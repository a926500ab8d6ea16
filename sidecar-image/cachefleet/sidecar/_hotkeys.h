/* Hot-key detection in C: the entry points the sidecar's request loop calls.
 *
 * The tracker is a Python object of type cachefleet.sidecar._speedups.HotKeys (hotkeys.HotKeys
 * is its pure-Python reference, with identical results). Every call here needs the GIL: the
 * tracker is not locked, and admitting a key to the top-K table creates a bytes object.
 */
#ifndef CACHEFLEET_HOTKEYS_H
#define CACHEFLEET_HOTKEYS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Adds the HotKeys type to the module; 0, or -1 with an exception set. */
int cf_hotkeys_register(PyObject *module);

/* 1 when obj is an initialised HotKeys tracker (check once, when the route table is built). */
int cf_hotkeys_check(PyObject *obj);

/* Counts one request for key[0..len) whose whole-key MurmurHash3 x86_32 (seed 0) is key_hash,
 * and says whether the key is hot now: 1 hot, 0 not, -1 with an exception set (only when a
 * Python clock raised or returned a bad value, memory ran out admitting the key, or the
 * tracker is not initialised).
 *
 * tracker must be a HotKeys (see cf_hotkeys_check); it is borrowed, the key is only read during
 * the call (copied into a new bytes object when the key enters the top-K table, which is rare:
 * the common call allocates nothing). The default clock is CLOCK_MONOTONIC_COARSE (the
 * monotonic clock at timer-tick resolution, about 10 ns to read), read once per call; a tracker
 * made with clock=... calls that Python callable instead (tests only). */
int cf_hotkeys_observe(PyObject *tracker, uint32_t key_hash, const char *key, Py_ssize_t len);

/* cf_hotkeys_observe in two steps, so a loop over the requests of one read reads the clock
 * once: cf_hotkeys_now reads the tracker's clock (0, or -1 with an exception), and
 * cf_hotkeys_observe_at counts the request at that time (a time before the tracker's last one
 * counts as the last one, as the reference does with a clock that goes back). */
int cf_hotkeys_now(PyObject *tracker, int64_t *now);
int cf_hotkeys_observe_at(PyObject *tracker, int64_t now, uint32_t key_hash, const char *key,
                          Py_ssize_t len);

/* Starts fetching the sketch cells cf_hotkeys_observe will touch for key_hash (one cache line
 * per row), so the request loop can do other work while memory answers; no effect otherwise. */
void cf_hotkeys_prefetch(PyObject *tracker, uint32_t key_hash);

/* Goes up by one each time a key becomes hot or stops being hot: compare it with the value a
 * route table was built at to know the hot set changed. */
uint64_t cf_hotkeys_generation(PyObject *tracker);

#endif
