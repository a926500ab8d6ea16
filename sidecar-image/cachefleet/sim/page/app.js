// The page: sliders from the knobs, the model recomputed on every move, numbers and charts.
"use strict";

(() => {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const params = Object.assign({}, DATA.params);
  const STYLE = DATA.style;
  const SOURCES = new Map(DATA.sources.map((s) => [s.name, s]));
  const figure = (name) => showFigure(SOURCES.get(name));
  const LOG_STEPS = 1000;

  // -- formatting ----------------------------------------------------------------------------
  const number = (v, digits = 0) =>
    v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const count = (v) => number(Math.round(v));
  const rate = (v) => `${count(v)}/s`;
  const percent = (v, digits = 1) => `${number(100 * v, digits)}%`;
  const times = (v) => `${number(v, v < 10 ? 2 : 1)}×`;
  const micros = (v) => (v === null ? "saturated" : `${number(v, 1)} µs`);
  const seconds = (v) => (v === 0 ? "at once" : `${number(v, v < 10 ? 2 : 0)} s`);
  function bytes(v) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${number(v, i === 0 ? 0 : 1)} ${units[i]}`;
  }

  // -- knobs ---------------------------------------------------------------------------------
  function positionOf(knob, value) {
    if (knob.choices.length) return knob.choices.indexOf(value);
    if (knob.log_scale) {
      const low = Math.max(knob.minimum, knob.step);
      const v = Math.max(value, low);
      return Math.round((LOG_STEPS * Math.log(v / low)) / Math.log(knob.maximum / low));
    }
    return value;
  }

  function valueAt(knob, position) {
    if (knob.choices.length) return knob.choices[position];
    if (knob.log_scale) {
      const low = Math.max(knob.minimum, knob.step);
      const raw = low * Math.exp((Math.log(knob.maximum / low) * position) / LOG_STEPS);
      const stepped = Math.round(raw / knob.step) * knob.step;
      return Math.min(knob.maximum, Math.max(knob.minimum, +stepped.toPrecision(12)));
    }
    return +(+position).toPrecision(12);
  }

  function showValue(knob, value) {
    if (knob.name === "returns_with_data") return value ? "yes" : "no (restarted empty)";
    const digits = knob.step < 1 ? Math.max(0, -Math.floor(Math.log10(knob.step))) : 0;
    return `${number(value, digits)}${knob.unit ? " " + knob.unit : ""}`;
  }

  function buildKnobs() {
    for (const knob of DATA.knobs) {
      const box = document.querySelector(`.knobs[data-group="${knob.group}"]`);
      const row = document.createElement("div");
      row.className = "knob";
      const label = document.createElement("label");
      label.htmlFor = `knob-${knob.name}`;
      label.textContent = knob.label;
      const input = document.createElement("input");
      input.type = "range";
      input.id = `knob-${knob.name}`;
      input.dataset.knob = knob.name;
      if (knob.choices.length) {
        input.min = 0;
        input.max = knob.choices.length - 1;
        input.step = 1;
      } else if (knob.log_scale) {
        input.min = 0;
        input.max = LOG_STEPS;
        input.step = 1;
      } else {
        input.min = knob.minimum;
        input.max = knob.maximum;
        input.step = knob.step;
      }
      input.value = positionOf(knob, params[knob.name]);
      const output = document.createElement("output");
      output.id = `value-${knob.name}`;
      output.textContent = showValue(knob, params[knob.name]);
      const source = document.createElement("small");
      source.textContent = knob.source;
      input.addEventListener("input", () => {
        params[knob.name] = valueAt(knob, +input.value);
        output.textContent = showValue(knob, params[knob.name]);
        render();
      });
      row.append(label, input, output, source);
      box.appendChild(row);
    }
  }

  // -- numbers -------------------------------------------------------------------------------
  function table(id, head, rows) {
    const element = document.getElementById(id);
    element.innerHTML = "";
    if (head) {
      const tr = element.createTHead().insertRow();
      for (const cell of head) {
        const th = document.createElement("th");
        th.textContent = cell;
        tr.appendChild(th);
      }
    }
    const body = element.createTBody();
    for (const [key, label, ...cells] of rows) {
      const tr = body.insertRow();
      const th = document.createElement("th");
      th.textContent = label;
      tr.appendChild(th);
      cells.forEach((cell, i) => {
        const td = tr.insertCell();
        td.textContent = cell;
        td.id = `out-${id.replace("numbers-", "")}-${key}${cells.length > 1 ? "-" + i : ""}`;
      });
    }
  }

  function renderConnections(c) {
    table("numbers-connections", ["", "client-side sharding", "sidecar per pod"], [
      ["total", "connections, whole fleet", count(c.client_side_total), count(c.sidecar_total)],
      ["per_shard", "connections per cache node", count(c.client_side_per_shard), count(c.sidecar_per_shard)],
      ["per_pod", "connections to cache nodes per app pod", count(c.client_side_per_pod), count(c.sidecar_per_pod)],
      ["loopback", "app connections inside the pod", "—", count(c.app_to_sidecar_per_pod)],
      ["memory", "Redis memory for them, per node (busy … idle)",
        `${bytes(c.client_side_shard_memory_active)} … ${bytes(c.client_side_shard_memory_idle)}`,
        `${bytes(c.sidecar_shard_memory_active)} … ${bytes(c.sidecar_shard_memory_idle)}`],
      ["maxclients", `over Redis's default maxclients (${count(c.maxclients)})?`,
        c.client_side_per_shard > c.maxclients ? "yes: refused" : "no",
        c.sidecar_per_shard > c.maxclients ? "yes: refused" : "no"],
    ]);
    document.getElementById("summary-connections").textContent =
      `The sidecar divides each cache node's connections by ${times(c.reduction)}: ` +
      `${count(c.client_side_per_shard)} → ${count(c.sidecar_per_shard)}. It does not remove the ` +
      "pods × nodes mesh: every sidecar still holds connections to every node.";
    CachefleetCharts.lineChart(document.getElementById("chart-connections"), {
      xLabel: "app pods", yLabel: "connections per cache node", xLog: true, yLog: true,
      series: [
        { name: "client_side", label: "client-side sharding", x: c.curve_pods, y: c.curve_client_side_per_shard, color: STYLE.client_side },
        { name: "sidecar", label: "sidecar per pod", x: c.curve_pods, y: c.curve_sidecar_per_shard, color: STYLE.sidecar },
      ],
      hlines: [{ y: c.maxclients, label: "Redis default maxclients" }],
      vlines: [{ x: params.app_pods, label: `${count(params.app_pods)} pods` }],
    });
  }

  function renderLatency(l) {
    const F = DATA.figures;
    table("numbers-latency", null, [
      ["rate_per_pod", "requests per pod (one sidecar)", rate(l.rate_per_pod)],
      ["utilisation", "sidecar's core busy", percent(l.sidecar_utilisation)],
      ["saturation", "one sidecar saturates at", rate(l.sidecar_saturation_rate)],
      ["hop", "the extra hop (measured, plus queueing)", micros(l.hop_us)],
      ["client_side", "a read, compiled smart client", micros(l.client_side_us)],
      ["python_client", "a read, cachefleet's Python client", micros(l.python_client_us)],
      ["sidecar", "a read through the sidecar", micros(l.sidecar_us)],
      ["overhead", "sidecar against the compiled client", l.overhead === null ? "saturated" : percent(l.overhead)],
      ["cores", "CPU cores, all sidecars", number(l.sidecar_cores, 1)],
      ["twemproxy_cores", "… the same load through twemproxy", number(l.twemproxy_cores, 1)],
      ["smart_client_cores", "… a compiled smart client in the apps", number(l.smart_client_cores, 2)],
      ["python_client_cores", "… cachefleet's Python client in the apps, at most", number(l.python_client_cores, 1)],
    ]);
    document.getElementById("summary-latency").textContent =
      `An idle sidecar adds the ${figure("sidecar_hop_us")} bench/client.py measured (p50); at ` +
      `${rate(l.rate_per_pod)} per pod its queue adds ` +
      (l.hop_us === null ? "without bound: it is saturated. " : `${micros(l.hop_us - F.sidecar_hop_us)} more. `) +
      `Routing in the app instead costs a compiled smart client ${figure("route_cost_us")} (the hash ` +
      `and ring look-up); cachefleet's Python client measured ${figure("python_client_added_us")} per call.`;
    CachefleetCharts.lineChart(document.getElementById("chart-latency"), {
      xLabel: "requests per second through one sidecar", yLabel: "added to a read, µs",
      series: [{ name: "hop", label: `sidecar hop (pipeline ${params.pipeline})`, x: l.curve_rate_per_pod, y: l.curve_hop_us, color: STYLE.sidecar }],
      hlines: [{ y: F.python_client_added_us, label: "cachefleet's Python client (measured)", color: STYLE.client_side }],
      vlines: [{ x: l.rate_per_pod, label: "this fleet" }],
    });
  }

  function renderTimeChart(id, result, names, labels, events) {
    CachefleetCharts.lineChart(document.getElementById(id), {
      width: 1100, height: 340, xLabel: "seconds", yLabel: "database reads/s (log)", yLog: true, legend: "right",
      series: names.map((name) => ({
        name, label: labels[name], x: result.time, y: result.strategies[name].database_rate,
        color: STYLE[name], dash: name === "consistent" ? "6 3" : undefined,
      })),
      hlines: [{ y: result.baseline_database_rate, label: "steady", color: "#555" }],
      vlines: events,
    });
  }

  function renderFailure(f) {
    const names = DATA.constants.failure.strategies;
    const labels = DATA.labels.failure;
    table("numbers-failure",
      ["", "reads failing", "served elsewhere", "failed reads", "peak DB", "extra DB reads", "stale reads after", "busiest server"],
      names.map((n) => {
        const o = f.strategies[n];
        return [n, labels[n], percent(o.failed_share, 2), percent(o.moved_share, 2), count(o.failed_reads),
          times(o.peak_ratio), count(o.extra_database_reads), count(o.stale_reads), percent(o.busiest_server_utilisation)];
      }));
    document.getElementById("summary-failure").textContent =
      `Steady state: ${percent(f.steady_hit_ratio)} hits, ${rate(f.baseline_database_rate)} to the database. ` +
      `The gutter loses ${percent(f.gutter_failure_reduction, 2)} fewer reads than no failover ` +
      `(Facebook measured ${figure("gutter_failure_reduction")} fewer client-visible failures). ` +
      `bench/failover.py measured the sidecar's error window at ${figure("sidecar_kill_error_window_s")} ` +
      `after kill -9 and ${figure("sidecar_stop_error_window_s")} for a hung shard, twemproxy's at ` +
      `${figure("twemproxy_kill_error_window_s")} after kill -9: move the detection slider to compare.`;
    renderTimeChart("chart-failure", f, names, labels, [
      { x: 0, label: "fails" },
      { x: params.outage_s, label: "back" },
    ]);
  }

  function renderCelebrity(c) {
    table("numbers-celebrity", null, [
      ["per_sidecar", "the key's reads at one sidecar", rate(c.rate_per_sidecar)],
      ["hot", "hot at the sidecars (served from L1)", c.hot ? "yes" : `no: below ${rate(params.hot_threshold)}`],
      ["hot_from", "a threshold that would catch it, per sidecar", `≤ ${rate(c.rate_per_sidecar)}`],
      ["l1_from", "L1 starts when the key's fleet-wide rate reaches", rate(c.l1_from_fleet_rate)],
      ["overload_from", "its shard saturates (without L1) from", rate(c.overload_from_rate)],
      ["protect", "a threshold that starts L1 before that, per sidecar", `≤ ${number(c.threshold_to_protect_shard, 1)}/s`],
      ["without", "its shard's load without L1", `${rate(c.hot_shard_rate_without_l1)} (${percent(c.utilisation_without_l1, 0)})`],
      ["with", "its shard's load with L1", `${rate(c.hot_shard_rate_with_l1)} (${percent(c.utilisation_with_l1, 0)})`],
      ["reaching", "the key's reads that still reach the shard", percent(c.share_reaching_shard)],
    ]);
    CachefleetCharts.lineChart(document.getElementById("chart-celebrity"), {
      xLabel: "the celebrity key's reads per second, whole fleet", yLabel: "its shard's requests/s",
      series: [
        { name: "without_l1", label: "without L1", x: c.curve_rate, y: c.curve_without_l1, color: STYLE.client_side },
        { name: "with_l1", label: "sidecar L1", x: c.curve_rate, y: c.curve_with_l1, color: STYLE.sidecar },
      ],
      hlines: [{ y: c.shard_capacity, label: "one shard's measured capacity" }],
      vlines: [{ x: params.celebrity_rate, label: "this key" }],
    });
  }

  function renderCapacity(r) {
    const names = DATA.constants.capacity.strategies;
    const labels = DATA.labels.capacity;
    table("numbers-capacity",
      ["", "keys moved", "cut-over at", "moved reads missing at cut-over", "peak DB", "extra DB reads"],
      names.map((n) => {
        const o = r.strategies[n];
        return [n, labels[n], percent(o.moved_share), seconds(o.cutover_s), percent(o.new_owner_miss_share),
          times(o.peak_ratio), count(o.extra_database_reads)];
      }));
    document.getElementById("summary-capacity").textContent =
      `${params.resize_from} → ${params.resize_to} shards: the least any placement can move is ` +
      `${percent(r.ideal_moved_share)}. The warm-up's ramp ends at ${seconds(r.ramp_done_s)}; it cuts over ` +
      `at ${seconds(r.strategies.warmup.cutover_s)} ${r.cutover_by_timeout ? "on the timeout" : "on the hit ratio"} ` +
      `(${percent(r.warm_hit_ratio_at_cutover)} of the moved reads warm). bench/warmup.py made a 4 → 5 ` +
      `change on one machine: ${figure("warmup_modulo_missed")} of keys missed under hash % N, ` +
      `and the database peaked at ${figure("warmup_immediate_peak")} cutting over at once, ` +
      `${figure("warmup_peak")} with the warm-up (a different setup: see the note below).`;
    renderTimeChart("chart-capacity", r, names, labels, [
      { x: 0, label: "change" },
      { x: r.strategies.warmup.cutover_s, label: "warm-up cuts over" },
    ]);
  }

  // -- sources -------------------------------------------------------------------------------
  function showFigure(source) {
    if (source.unit === "fraction") return percent(source.value);
    const value = source.value.toLocaleString("en-US", { maximumFractionDigits: 3 });
    return source.unit.startsWith("×") ? `${value}${source.unit}` : `${value} ${source.unit}`;
  }

  // The notes name measured figures by name (data-figure), so no number is restated in them.
  function fillFigures() {
    for (const element of document.querySelectorAll("[data-figure]")) {
      const source = SOURCES.get(element.dataset.figure);
      if (!source) throw new Error(`the page names an unknown figure: ${element.dataset.figure}`);
      element.textContent = showFigure(source);
      element.title = `${source.document}: ${source.section}`;
    }
  }

  function buildSources() {
    table("sources", ["figure", "value", "used as", "from", "it says"],
      DATA.sources.map((s) => [s.name, s.label, showFigure(s),
        s.role === "input" ? "input" : "check", `${s.document}: ${s.section}`, `“${s.quote}”`]));
  }

  let renders = 0;
  function render() {
    const banner = document.getElementById("error");
    try {
      const result = CachefleetModel.simulate(params, DATA);
      renderConnections(result.connections);
      renderLatency(result.latency);
      renderFailure(result.failure);
      renderCelebrity(result.celebrity);
      renderCapacity(result.capacity);
      banner.hidden = true;
      renders += 1;
      document.body.dataset.renders = String(renders);
    } catch (error) {
      banner.hidden = false;
      banner.textContent = `The model failed: ${error.message}`;
      console.error(error);
    }
  }

  buildKnobs();
  buildSources();
  fillFigures();
  render();
  window.cachefleetSim = { params, data: DATA, render };
})();
