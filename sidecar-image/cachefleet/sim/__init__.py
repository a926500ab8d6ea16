"""``cachefleet sim``: client-side sharding against sidecar proxying, as a model.

Pure functions from inputs (``params``) and ring figures computed with the project's ring code
(``rings``) to numbers and curves (``scenarios``); ``page`` writes them into a self-contained
HTML page whose JavaScript copy of the model recomputes as sliders move, ``charts`` draws PNGs
with matplotlib (imported only there). No kopf, no Kubernetes client: this is the data plane's
package, and the model is calibrated with what its benches measured (``calibration``).
"""
